"""The engine's guarantees: a grid member equals its plain Optax run, accumulation
equals true large batches, and divergence stays inside its member."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lrjax import data, grid, models
from lrjax.engine import TrainSettings
from lrjax.engine import train_grid
from plain_training import plain_train, plain_train_batches
from tree_helpers import assert_trees_allclose, assert_trees_equal


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


def member_params(result, member):
  return jax.tree.map(lambda a: a[member], result.params)


TINY_MLP = dict(hidden=(32,))


def test_member_equals_plain_optax_loop_in_16_member_grid(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.01, 0.03, 0.1, 0.3), "batch_size": (16, 32),
                          "seed": (0, 1)})
  assert len(table) == 16
  settings = TrainSettings(optimizer="momentum", epochs=1, eval_every=640)
  result = train_grid(model, digits, table, settings, progress=False)
  n_examples = result.info["examples_per_member"]
  for row in table[(table.lr == 0.1) | (table.lr == 0.01)].itertuples():
    expected = plain_train(model, digits, optax.sgd(row.lr, momentum=0.9), row.batch_size,
                           row.seed, n_examples)
    assert_trees_allclose(member_params(result, row.member), expected, rtol=1e-4, atol=1e-5)


def test_accumulated_batch_equals_true_batch_when_micro_batch_is_quarter(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.05, 0.2), "batch_size": (32,)})
  common = dict(optimizer="adam", epochs=1, eval_every=640)
  accumulated = train_grid(model, digits, table, TrainSettings(micro_batch=8, **common),
                           progress=False)
  true_batch = train_grid(model, digits, table, TrainSettings(micro_batch=32, **common),
                          progress=False)
  assert accumulated.info["examples_per_member"] == true_batch.info["examples_per_member"]
  assert (accumulated.members.updates == true_batch.members.updates).all()
  assert_trees_allclose(accumulated.params, true_batch.params, rtol=1e-4, atol=1e-5)


def test_diverging_member_leaves_others_bit_identical(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  settings = TrainSettings(optimizer="momentum", epochs=1, eval_every=640)
  axes = {"batch_size": (16, 32), "seed": (0,)}
  with_bad = train_grid(model, digits, grid.make_grid({"lr": (0.01, 0.1, 1e3), **axes}),
                        settings, progress=False)
  without = train_grid(model, digits, grid.make_grid({"lr": (0.01, 0.1), **axes}),
                       settings, progress=False)
  bad = with_bad.members[with_bad.members.lr == 1e3]
  assert bad.diverged.all() and (bad.diverged_at >= 0).all()
  assert bad.final_val_acc.isna().all()
  good = with_bad.members[with_bad.members.lr != 1e3]
  assert not good.diverged.any()
  for row in good.itertuples():
    twin = without.members[(without.members.lr == row.lr) &
                           (without.members.batch_size == row.batch_size)].member.item()
    assert_trees_equal(member_params(with_bad, row.member), member_params(without, twin))
    hist_a = with_bad.history[with_bad.history.member == row.member].drop(columns="member")
    hist_b = without.history[without.history.member == twin].drop(columns="member")
    np.testing.assert_array_equal(hist_a.to_numpy(), hist_b.to_numpy())


class LinenNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[:-3] + (-1,))
    return nn.Dense(10)(nn.tanh(nn.Dense(24)(x)))


class NnxNet(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, 24, rngs=rngs)
    self.out = nnx.Linear(24, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(jnp.tanh(self.hidden(x.reshape(x.shape[:-3] + (-1,)))))


@pytest.mark.parametrize("adapter", [models.from_linen(LinenNet()), models.from_nnx(NnxNet)],
                         ids=["linen", "nnx"])
def test_user_model_member_equals_plain_loop_when_linen_or_nnx(digits, adapter):
  table = grid.make_grid({"lr": (0.05, 0.5), "batch_size": (32,), "seed": (3,)})
  result = train_grid(adapter, digits, table,
                      TrainSettings(optimizer="nesterov", epochs=1, eval_every=640),
                      progress=False)
  assert result.members.final_val_acc.max() > 0.5
  expected = plain_train(adapter, digits, optax.sgd(0.05, momentum=0.9, nesterov=True), 32, 3,
                         result.info["examples_per_member"])
  assert_trees_allclose(member_params(result, 0), expected, rtol=1e-4, atol=1e-5)


def test_members_sharing_seed_start_from_same_weights_when_only_lr_differs(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (1e-8, 2e-8), "batch_size": (64,), "seed": (0, 1)})
  result = train_grid(model, digits, table, TrainSettings(optimizer="sgd", epochs=1),
                      progress=False)
  w = result.params["Dense_0"]["kernel"]
  np.testing.assert_allclose(w[0], w[1], atol=1e-6)  # seed 0, two LRs
  assert np.abs(w[0] - w[2]).max() > 1e-2  # seed 0 vs seed 1


def test_history_records_examples_updates_and_lr_when_batch_sizes_differ(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.1,), "batch_size": (16, 64)})
  result = train_grid(model, digits, table,
                      TrainSettings(optimizer="momentum", schedule="cosine", epochs=2,
                                    eval_every=640), progress=False)
  hist = result.history
  n_eval = result.info["num_segments"]
  assert len(hist) == 2 * n_eval
  last = hist.groupby("member").last()
  ex = result.info["examples_per_member"]
  assert (last.examples_seen == ex).all()
  assert last.updates.tolist() == [ex // 16, ex // 64]
  np.testing.assert_allclose(last.lr_now, 0.0, atol=1e-7)  # cosine reached its end
  assert result.members.updates.tolist() == [ex // 16, ex // 64]


def test_results_equal_when_members_run_in_lax_map_slices(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.01, 0.02, 0.05, 0.1), "batch_size": (16, 32), "seed": (0,)})
  common = dict(optimizer="momentum", epochs=1, eval_every=640)
  sliced = train_grid(model, digits, table, TrainSettings(vmap_width=2, **common),
                      progress=False)
  whole = train_grid(model, digits, table, TrainSettings(vmap_width=64, **common),
                     progress=False)
  assert_trees_allclose(sliced.params, whole.params, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(sliced.members.final_val_loss, whole.members.final_val_loss,
                             rtol=1e-4)


def test_slices_fit_each_device_share_when_inner_axis_split(digits):
  # 6 inner members over 2 devices: 3 per device, so width 2 (a divisor of the
  # whole block) must not be used on a device's share of 3.
  if len(jax.devices()) < 2:
    pytest.skip("needs 2 devices (tests run with one CPU device per core)")
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.01, 0.02, 0.03, 0.05, 0.07, 0.1), "batch_size": (32,)})
  common = dict(optimizer="momentum", epochs=1, eval_every=640)
  two = train_grid(model, digits, table, TrainSettings(vmap_width=2, **common), progress=False)
  one = train_grid(model, digits, table, TrainSettings(vmap_width=1, **common), progress=False)
  assert two.info["member_devices"] == 2 and two.info["split_axis"] == "inner"
  assert_trees_allclose(two.params, one.params, rtol=1e-4, atol=1e-5)


def test_schedule_families_share_one_program_when_schedule_is_an_axis(digits):
  from lrjax import transforms

  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.05, 0.5), "batch_size": (32,),
                          "schedule": ("cosine", "plateau", "onecycle")})
  plateau = {"factor": 0.5, "patience": 0, "threshold": 0.05}
  settings = TrainSettings(optimizer="momentum", schedule_kwargs={"plateau": plateau},
                           epochs=3, eval_every=320)
  result = train_grid(model, digits, table, settings, progress=False)
  hist = result.history.merge(table[["member", "lr", "schedule"]], on="member")
  last = hist.groupby("member").last()
  cos = last[last.schedule == "cosine"]
  np.testing.assert_allclose(cos.lr_now, 0.0, atol=1e-7)
  one = last[last.schedule == "onecycle"]
  assert (one.lr_now < one.lr / 1000).all()  # onecycle anneals to max/(25*1e4)-ish
  # Plateau members: replay torch's rule on the recorded validation losses.
  for member, rows in hist[hist.schedule == "plateau"].groupby("member"):
    state = transforms.plateau_init("min")
    for row in rows.itertuples():
      state = transforms.plateau_step(state, row.val_loss, **plateau)
      np.testing.assert_allclose(row.lr_now, row.lr * float(state.scale), rtol=1e-6)
  assert (hist[hist.schedule == "plateau"].lr_now < hist[hist.schedule == "plateau"].lr).any()


def test_optimizer_hparam_axis_matches_plain_optax_when_b1_varies(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.003,), "batch_size": (32,), "b1": (0.5, 0.9)})
  result = train_grid(model, digits, table,
                      TrainSettings(optimizer="adam", epochs=1, eval_every=640),
                      progress=False)
  for row in table.itertuples():
    expected = plain_train(model, digits, optax.adam(row.lr, b1=row.b1), 32, 0,
                           result.info["examples_per_member"])
    assert_trees_allclose(member_params(result, row.member), expected, rtol=1e-4, atol=1e-5)


def test_multiplicity_trains_on_augmented_copies_when_aug_positive(digits):
  from lrjax import augment

  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,), "aug": (0.0, 1.0)})
  policy = augment.policy_for("digits", digits.image_shape)
  one = train_grid(model, digits, table, TrainSettings(epochs=1, augment_policy=policy),
                   progress=False)
  four = train_grid(model, digits, table,
                    TrainSettings(epochs=1, augment_policy=policy, multiplicity=4),
                    progress=False)
  assert np.isfinite(four.members.final_val_loss).all()
  # Strength 0 is the identity, so its 4 copies are the same batch: the same gradient.
  w1, w4 = (r.params["Dense_0"]["kernel"] for r in (one, four))
  np.testing.assert_allclose(w1[0], w4[0], rtol=1e-4, atol=1e-5)
  assert np.abs(w1[1] - w4[1]).max() > 1e-4  # strength 1: 4 different augmented copies


def test_cycled_momentum_member_equals_plain_optax_when_onecycle(digits):
  from lrjax import schedules

  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.2,), "batch_size": (32,)})
  kwargs = {"cycle_momentum": True, "base_momentum": 0.8, "max_momentum": 0.95}
  result = train_grid(model, digits, table,
                      TrainSettings(optimizer="nesterov", schedule="onecycle",
                                    schedule_kwargs=kwargs, epochs=1, eval_every=640),
                      progress=False)
  n = result.info["examples_per_member"]
  total = n // 32
  lr = schedules.onecycle(0.2, total_steps=total)
  mom = schedules.momentum_schedule("onecycle", {"max_value": 0.2, "total_steps": total},
                                    0.8, 0.95)
  opt = optax.inject_hyperparams(
      lambda learning_rate, momentum: optax.sgd(learning_rate, momentum, nesterov=True))(
          learning_rate=lr, momentum=mom)
  expected = plain_train(model, digits, opt, 32, 0, n)
  assert_trees_allclose(member_params(result, 0), expected, rtol=1e-4, atol=1e-5)


def test_single_op_magnitude_is_a_grid_axis_when_aug_op_axis_given(digits):
  from lrjax import augment

  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,), "aug": (0.0,),
                          "aug_max_shift": (0.0, 2.0)})
  policy = augment.policy_for("digits", digits.image_shape)
  result = train_grid(model, digits, table, TrainSettings(epochs=1, augment_policy=policy),
                      progress=False)
  w = result.params["Dense_0"]["kernel"]
  assert result.info["num_groups"] == 2  # the op magnitude splits input groups
  assert np.abs(w[0] - w[1]).max() > 1e-4  # shifted inputs train a different model
  plain = train_grid(model, digits, table.iloc[:1].reset_index(drop=True).drop(
      columns="aug_max_shift"), TrainSettings(epochs=1), progress=False)
  np.testing.assert_allclose(w[0], plain.params["Dense_0"]["kernel"][0], rtol=1e-5, atol=1e-6)


def test_resumed_run_equals_uninterrupted_run_when_killed_mid_training(digits, tmp_path):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.03, 0.1), "batch_size": (16, 32), "seed": (0, 1)})
  settings = TrainSettings(optimizer="momentum", epochs=2, eval_every=640,
                           max_members_per_chunk=4)  # two chunks

  class Interrupt(Exception):
    pass

  def stop_after_three(done, total):
    if done == 3:
      raise Interrupt

  with pytest.raises(Interrupt):
    train_grid(model, digits, table, settings, progress=False, on_segment=stop_after_three,
               checkpoint_dir=str(tmp_path), checkpoint_every_s=0.0)
  resumed = train_grid(model, digits, table, settings, progress=False,
                       checkpoint_dir=str(tmp_path))
  straight = train_grid(model, digits, table, settings, progress=False)
  assert resumed.info["num_chunks"] == 2
  assert_trees_allclose(resumed.params, straight.params, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(resumed.history.drop(columns="member").to_numpy(float),
                             straight.history.drop(columns="member").to_numpy(float),
                             rtol=1e-6)


def test_label_smoothing_member_equals_plain_loop_with_smoothed_labels(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,)})
  settings = TrainSettings(optimizer="momentum", epochs=1, eval_every=640,
                           label_smoothing=0.1)
  result = train_grid(model, digits, table, settings, progress=False)
  expected = plain_train(model, digits, optax.sgd(0.1, momentum=0.9), 32, 0,
                         result.info["examples_per_member"], label_smoothing=0.1)
  assert_trees_allclose(member_params(result, 0), expected, rtol=1e-4, atol=1e-5)
  unsmoothed = train_grid(model, digits, table, TrainSettings(
      optimizer="momentum", epochs=1, eval_every=640), progress=False)
  assert not np.allclose(unsmoothed.params["Dense_0"]["kernel"],
                         result.params["Dense_0"]["kernel"])


def test_noise_scale_agrees_with_exact_per_example_value_when_params_barely_move(digits):
  # lr 1e-7: the parameters stay at their init, so each evaluation period's two-batch
  # estimate (micro-batch 16, batch 64) is a fresh draw of B_simple at the init.
  model = models.get_model("mlp", 10, hidden=(16,))
  table = grid.make_grid({"lr": (1e-7,), "batch_size": (16, 64)})
  result = train_grid(model, digits, table, TrainSettings(optimizer="sgd", epochs=8,
                                                          micro_batch=16), progress=False)
  hist = result.history.merge(result.members[["member", "batch_size"]], on="member")
  assert hist[hist.batch_size == 16].noise_scale.isna().all()  # k = 1: one batch size only
  draws = hist[hist.batch_size == 64].noise_scale.to_numpy()
  assert len(draws) == 8 and np.isfinite(draws).all()

  sample = jnp.zeros((1,) + digits.image_shape, jnp.float32)
  params = model.init(jax.random.fold_in(jax.random.key(0), 0), sample)
  x = jnp.asarray(digits.train.images, jnp.float32) / 255.0
  y = jax.nn.one_hot(digits.train.labels, 10)
  one = lambda p, xi, yi: optax.softmax_cross_entropy(model.apply(p, xi[None]), yi[None]).mean()
  grads = jax.jit(jax.vmap(jax.grad(one), in_axes=(None, 0, 0)))(params, x, y)
  flat = jnp.concatenate([a.reshape(len(x), -1) for a in jax.tree.leaves(grads)], axis=1)
  mean = flat.mean(0)
  exact = float(jnp.mean(jnp.sum((flat - mean[None]) ** 2, 1)) / jnp.sum(mean ** 2))
  standard_error = draws.std(ddof=1) / np.sqrt(len(draws))
  assert abs(draws.mean() - exact) <= 3 * standard_error, (draws, exact)


def test_batch_growth_member_equals_plain_loop_that_grows_its_batch_at_same_points(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.1,), "batch_size": (16,), "batch_growth": (1, 2)})
  settings = TrainSettings(optimizer="momentum", epochs=2, eval_every=640,
                           batch_growth_at=(0.5, 0.75))
  result = train_grid(model, digits, table, settings, progress=False)
  edges = [0, *result.info["batch_growth_examples"], result.info["examples_per_member"]]
  assert len(edges) == 4 and edges[1] < edges[2] < edges[3]
  for row in table.itertuples():
    batch_sizes = []
    for phase in range(3):
      batch = 16 * row.batch_growth ** phase
      assert (edges[phase + 1] - edges[phase]) % batch == 0  # each phase ends on a batch
      batch_sizes += [batch] * ((edges[phase + 1] - edges[phase]) // batch)
    params = plain_train_batches(model, digits, optax.sgd(0.1, momentum=0.9), batch_sizes,
                                 0, edges[-1])
    assert result.members.updates[row.member] == len(batch_sizes)
    assert_trees_allclose(member_params(result, row.member), params, rtol=1e-4, atol=1e-5)
  assert result.members.updates[1] < result.members.updates[0]


# Width 1 in the default suite; the other widths (one compile each) under -m slow.
@pytest.mark.parametrize("vmap_width", [1, pytest.param(2, marks=pytest.mark.slow),
                                        pytest.param(64, marks=pytest.mark.slow)])
def test_tick_losses_average_to_history_train_loss_when_recorded(digits, vmap_width):
  table = grid.make_grid({"lr": (0.05, 0.2), "batch_size": (32, 64), "seed": (0, 1)})
  settings = TrainSettings(epochs=1, eval_every=400, vmap_width=vmap_width,
                           record_tick_loss=True)
  result = train_grid(models.get_model("mlp", 10, **TINY_MLP), digits, table, settings,
                      progress=False)
  segments, ticks = result.info["num_segments"], result.info["ticks_per_segment"]
  assert result.tick_loss.shape == (len(table), segments * ticks)
  per_segment = result.tick_loss.reshape(len(table), segments, ticks).mean(-1)
  history = result.history.pivot(index="member", columns="examples_seen",
                                 values="train_loss").to_numpy()
  np.testing.assert_allclose(per_segment, history, rtol=1e-6)
  assert np.all(per_segment[:, -1] < result.tick_loss[:, 0])  # it learned
  plain = train_grid(models.get_model("mlp", 10, **TINY_MLP), digits, table,
                     TrainSettings(epochs=1, eval_every=400), progress=False)
  assert plain.tick_loss is None


# ------------------------------------------------------------- equal updates


def test_updates_budget_members_equal_plain_loops_of_the_same_number_of_updates(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.1,), "batch_size": (16, 32, 64)})
  settings = TrainSettings(optimizer="momentum", epochs=1, eval_every=320, budget="updates")
  result = train_grid(model, digits, table, settings, progress=False)
  u = result.info["update_budget"]
  assert u == round(len(digits.train) / 16)
  assert (result.members["updates"] == u).all()
  # The run lasts until the largest batch is done; smaller batches stop updating.
  assert result.info["examples_per_member"] >= u * 64
  for row in table.itertuples():
    expected = plain_train(model, digits, optax.sgd(0.1, momentum=0.9), row.batch_size, 0,
                           u * row.batch_size)
    assert_trees_allclose(member_params(result, row.member), expected, rtol=1e-4, atol=1e-5)


def test_updates_budget_schedule_spans_each_members_own_updates(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.1,), "batch_size": (16, 64), "schedule": ("cosine",)})
  settings = TrainSettings(epochs=1, eval_every=160, budget="updates")
  result = train_grid(model, digits, table, settings, progress=False)
  u = result.info["update_budget"]
  cosine = optax.cosine_decay_schedule(0.1, u)
  h = result.history
  for member in (0, 1):
    rows = h[h["member"] == member]
    assert rows["updates"].iloc[-1] == u and rows["lr_now"].iloc[-1] == pytest.approx(0.0)
    mid = rows.iloc[(rows["updates"] - u / 2).abs().argmin()]
    assert mid["lr_now"] == pytest.approx(float(cosine(mid["updates"])), rel=1e-5)


def test_updates_budget_with_batch_growth_equals_plain_loop_growing_at_same_updates(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.1,), "batch_size": (16, 32), "batch_growth": (1, 2)})
  settings = TrainSettings(optimizer="momentum", epochs=2, eval_every=640,
                           batch_growth_at=(0.5, 0.75), budget="updates")
  result = train_grid(model, digits, table, settings, progress=False)
  u = result.info["update_budget"]
  assert (result.members["updates"] == u).all()
  for row in table.itertuples():
    g = row.batch_growth
    # The batch grows at fraction x budget updates, on a multiple of g ** 2 updates.
    points = [max(1, round(f * u / g ** 2)) * g ** 2 for f in (0.5, 0.75)]
    batch_sizes = [row.batch_size * g ** sum(n >= p for p in points) for n in range(u)]
    params = plain_train_batches(model, digits, optax.sgd(0.1, momentum=0.9), batch_sizes,
                                 0, result.info["examples_per_member"])
    assert_trees_allclose(member_params(result, row.member), params, rtol=1e-4, atol=1e-5)
