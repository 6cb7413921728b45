"""A plain Optax training loop: the reference the engine is checked against."""
import jax
import jax.numpy as jnp
import optax

from lrjax.data import example_order


def plain_train(adapter, dataset, optimizer, batch_size, seed, num_examples,
                label_smoothing=0.0):
  """Trains one model the textbook way: one jitted step per batch of the seed's stream."""
  return plain_train_batches(adapter, dataset, optimizer,
                             [batch_size] * (num_examples // batch_size), seed, num_examples,
                             label_smoothing=label_smoothing)


def plain_train_batches(adapter, dataset, optimizer, batch_sizes, seed, num_examples,
                        label_smoothing=0.0):
  """The textbook loop with a batch size per update (batch growth): update ``n`` takes
  the next ``batch_sizes[n]`` examples of the seed's stream ``example_order(seed,
  n_train, num_examples)``; initial weights from ``fold_in(key(seed), 0)``."""
  order = example_order(seed, len(dataset.train), num_examples)
  x_all = jnp.asarray(dataset.train.images)
  y_all = jnp.asarray(dataset.train.labels)
  sample = jnp.zeros((1,) + dataset.image_shape, jnp.float32)
  params = adapter.init(jax.random.fold_in(jax.random.key(seed), 0), sample)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, idx):
    x = x_all[idx].astype(jnp.float32) / 255.0
    y = optax.smooth_labels(jax.nn.one_hot(y_all[idx], dataset.num_classes), label_smoothing)
    loss_fn = lambda p: optax.softmax_cross_entropy(adapter.apply(p, x), y).mean()
    updates, opt_state = optimizer.update(jax.grad(loss_fn)(params), opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  start = 0
  for batch in batch_sizes:
    params, opt_state = step(params, opt_state, jnp.asarray(order[start:start + batch]))
    start += batch
  return params


def plain_train_stateful(adapter, dataset, optimizer, batch_size, seed, num_examples, *,
                         micro_batch=None, bn_batch=0, label_smoothing=0.0,
                         loss=optax.softmax_cross_entropy):
  """The textbook loop for models with state (BatchNorm) and dropout, one example at a
  time through Python: each batch of ``batch_size`` in micro-batches of ``micro_batch``
  (gradients averaged, one update per batch); in each micro-batch, ghost batches of
  ``bn_batch`` examples, each normalised alone with dropout key
  ``fold_in(fold_in(fold_in(key(seed), 3), tick), ghost)``, the running averages
  moved once per micro-batch with the ghost batches' mean. Returns (params, state)."""
  from lrjax.models import initial_state, train_logits

  micro_batch = micro_batch or batch_size
  order = example_order(seed, len(dataset.train), num_examples)
  x_all = jnp.asarray(dataset.train.images)
  y_all = jnp.asarray(dataset.train.labels)
  sample = jnp.zeros((1,) + dataset.image_shape, jnp.float32)
  key = jax.random.fold_in(jax.random.key(seed), 0)
  params = adapter.init(key, sample)
  state = initial_state(adapter, key, sample)
  opt_state = optimizer.init(params)
  dropout_key = jax.random.fold_in(jax.random.key(seed), 3)

  @jax.jit
  def micro_step(params, state, idx, tick):
    x = x_all[idx].astype(jnp.float32) / 255.0
    y = optax.smooth_labels(jax.nn.one_hot(y_all[idx], dataset.num_classes), label_smoothing)
    rng = jax.random.fold_in(dropout_key, tick)

    def loss_fn(p):
      if not bn_batch or not jax.tree.leaves(state) or bn_batch >= len(idx):
        logits, new_state = train_logits(adapter, p, state, x, rng)
        return loss(logits, y).mean(), new_state
      logits, states = [], []
      for j in range(len(idx) // bn_batch):
        lg, st = train_logits(adapter, p, state, x[j * bn_batch:(j + 1) * bn_batch],
                              jax.random.fold_in(rng, j))
        logits.append(lg)
        states.append(st)
      new_state = jax.tree.map(lambda *s: sum(s) / len(s), *states)
      return loss(jnp.concatenate(logits), y).mean(), new_state

    (_, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return grads, new_state

  @jax.jit
  def apply(params, opt_state, grads):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  k = batch_size // micro_batch
  for start in range(0, num_examples - batch_size + 1, batch_size):
    total = None
    for j in range(k):
      lo = start + j * micro_batch
      grads, state = micro_step(params, state, jnp.asarray(order[lo:lo + micro_batch]),
                                lo // micro_batch)
      total = grads if total is None else jax.tree.map(jnp.add, total, grads)
    params, opt_state = apply(params, opt_state, jax.tree.map(lambda g: g / k, total))
  return params, state


def plain_step_losses(adapter, dataset, optimizer, batch_size, seed, num_steps, *,
                      label_smoothing=0.0, loss=optax.softmax_cross_entropy):
  """The textbook loop's training loss at every step (before that step's update): one
  batch of the seed's stream ``example_order(seed, n_train, num_steps * batch_size)``
  per step, initial weights from ``fold_in(key(seed), 0)``. The range test's
  reference (the LR schedule lives in ``optimizer``)."""
  order = example_order(seed, len(dataset.train), num_steps * batch_size)
  x_all = jnp.asarray(dataset.train.images)
  y_all = jnp.asarray(dataset.train.labels)
  sample = jnp.zeros((1,) + dataset.image_shape, jnp.float32)
  params = adapter.init(jax.random.fold_in(jax.random.key(seed), 0), sample)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, idx):
    x = x_all[idx].astype(jnp.float32) / 255.0
    y = optax.smooth_labels(jax.nn.one_hot(y_all[idx], dataset.num_classes), label_smoothing)
    value, grads = jax.value_and_grad(lambda p: loss(adapter.apply(p, x), y).mean())(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  losses = []
  for t in range(num_steps):
    idx = jnp.asarray(order[t * batch_size:(t + 1) * batch_size])
    params, opt_state, value = step(params, opt_state, idx)
    losses.append(float(value))
  return losses
