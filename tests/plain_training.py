"""A plain Optax training loop: the reference the engine is checked against."""
import jax
import jax.numpy as jnp
import optax

from lrjax.data import example_order


def plain_train(adapter, dataset, optimizer, batch_size, seed, num_examples,
                label_smoothing=0.0):
  """Trains one model the textbook way: one jitted step per batch of the seed's stream."""
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
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for start in range(0, num_examples - batch_size + 1, batch_size):
    params, opt_state = step(params, opt_state, jnp.asarray(order[start:start + batch_size]))
  return params
