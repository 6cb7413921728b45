"""Tests for lrjax.augment: exact identity at strength 0, the documented laws, vmap."""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax.augment import ops
from lrjax import augment
from tree_helpers import assert_trees_allclose, assert_trees_equal

ALL_OPS = augment.Policy(
    name="all", max_shift=2, flip_prob=.5, rotate_deg=15, scale=.1, brightness=.2,
    contrast=.2, saturation=.2, hue=.05, cutout_frac=.3, mixup_alpha=.4,
    cutmix_alpha=1., noise_std=.05)
OFF = {op: 0.0 for op in augment.OPS}  # overrides that switch every op off
N, SHAPE = 64, (8, 8, 3)  # one batch shape, so most tests reuse one compiled program

aug = jax.jit(augment.augment_batch, static_argnames=("policy", "multiplicity"))


def _batch(n=N, shape=SHAPE, k=N, seed=0):
  x = jax.random.uniform(jax.random.key(seed), (n, *shape))
  y = jax.nn.one_hot(jnp.arange(n) % k, k)
  return x, y


# MNIST-1D: standardized sequences (N, 40, 1, 1), values well outside [0, 1].
SEQ = (40, 1, 1)
M1D = augment.policy_for("mnist1d", SEQ)
M1D_OFF = {op: 0.0 for op in augment.magnitudes(M1D, 1.0)}  # same keys: one program


def _seq_batch(n=N, k=10, seed=0):
  x = 1.5 * jax.random.normal(jax.random.key(seed), (n, *SEQ))
  return x, jax.nn.one_hot(jnp.arange(n) % k, k)


def _only_seq(x, y, seed=0, **on):
  """The mnist1d policy with every op off except `on` (one compiled program)."""
  return _run(M1D, 1.0, x, y, seed=seed, **{**M1D_OFF, **on})


def _run(policy, strength, x, y, seed=0, multiplicity=1, **overrides):
  mags = augment.magnitudes(policy, strength, **overrides)
  return aug(jax.random.key(seed), x, y, mags, policy=policy, multiplicity=multiplicity)


def _only(x, y, seed=0, **on):
  """ALL_OPS with every op off except `on`: same key set, so one compiled program."""
  return _run(ALL_OPS, 1.0, x, y, seed=seed, **{**OFF, **on})


@pytest.mark.parametrize("policy,shape", [
    (ALL_OPS, SHAPE),
    (augment.policy_for("digits", (8, 8, 1)), (8, 8, 1)),
    (M1D, SEQ),
    (augment.policy_for("unknown_sequences", SEQ), SEQ),
])
def test_identity_bitwise_strength_zero(policy, shape):
  if shape == SEQ:  # standardized values: outside [0, 1], nothing may clip them
    x, y = _seq_batch()
  else:
    x, y = _batch(n=8 if shape != SHAPE else N, shape=shape)
  xa, ya = _run(policy, 0.0, x, y)
  assert_trees_equal((xa, ya), (x, y))


def test_identity_bitwise_all_overrides_zero():
  x, y = _batch()
  assert_trees_equal(_only(x, y), (x, y))


# One jitted object, so the vmapped program compiles once for the whole module.
vaug = jax.jit(jax.vmap(augment.augment_batch, in_axes=(0, None, None, 0, None, None)),
               static_argnums=(4, 5))


@pytest.mark.parametrize("policy,batch", [(ALL_OPS, _batch), (M1D, _seq_batch)])
def test_identity_bitwise_zero_member_inside_vmap(policy, batch):
  x, y = batch()
  mags = jax.vmap(lambda s: augment.magnitudes(policy, s))(jnp.array([0.0, 1.0, 2.0]))
  keys = jax.random.split(jax.random.key(0), 3)
  xa, ya = vaug(keys, x, y, mags, policy, 1)
  assert_trees_equal((xa[0], ya[0]), (x, y))
  assert not np.array_equal(xa[1], x)


def test_shapes_dtypes_preserved_multiplicity():
  m = 3
  x, y = _batch(n=4)
  xa, ya = _run(ALL_OPS, 1.5, x, y, multiplicity=m)
  assert xa.shape == (4 * m, *SHAPE) and xa.dtype == jnp.float32
  assert ya.shape == (4 * m, N) and ya.dtype == jnp.float32
  xz, _ = _run(ALL_OPS, 0.0, x, y, multiplicity=m)
  assert_trees_equal(xz, jnp.tile(x, (m, 1, 1, 1)))
  xs, ys = _run(ALL_OPS, 1.5, x, y, multiplicity=m, mixup_alpha=0.0, cutmix_alpha=0.0)
  assert_trees_equal(ys, jnp.tile(y, (m, 1)))
  assert not np.array_equal(xs[:4], xs[4:8])  # copies are augmented independently


def test_flip_rate_matches_probability():
  p, keys = 0.3, 64
  x, y = _batch()
  flips = []
  for seed in range(keys):
    xa, _ = _only(x, y, seed=seed, flip_prob=p)
    flipped = np.all(np.asarray(xa) == np.asarray(x)[:, :, ::-1], axis=(1, 2, 3))
    same = np.all(np.asarray(xa) == np.asarray(x), axis=(1, 2, 3))
    assert np.all(flipped ^ same)
    flips.append(flipped)
  rate, n = np.mean(flips), keys * N
  assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_flip_prob_capped_at_half_strength_above_one():
  mags = augment.magnitudes(augment.policy_for("cifar10", (32, 32, 3)), 3.0)
  assert float(mags["flip_prob"]) == 0.5


def _shift_law(m):
  """P(shift = k) for shift = floor(u (m + 1/2) + 1/2), u ~ U[-1, 1)."""
  r = m + 0.5
  ks = np.arange(-math.ceil(m), math.ceil(m) + 1)
  lo = np.maximum(ks - 0.5, -r)
  hi = np.minimum(ks + 0.5, r)
  return ks, np.maximum(hi - lo, 0) / (2 * r)


@pytest.mark.parametrize("m", [3.0, 1.5, 0.3])
def test_shift_distribution_matches_law(m):
  c = SHAPE[0] // 2
  x = jnp.zeros((N, *SHAPE)).at[:, c, c, :].set(1.0)
  _, y = _batch()
  dys, dxs = [], []
  for seed in range(32):
    xa, _ = _only(x, y, seed=seed, max_shift=m)
    xa = np.asarray(xa)[..., 0]
    assert np.all(xa.reshape(N, -1).sum(1) == 1.0)  # a pure integer shift
    pos = np.argwhere(xa == 1.0)
    dys.append(pos[:, 1] - c)
    dxs.append(pos[:, 2] - c)
  dy, dx = np.concatenate(dys), np.concatenate(dxs)
  ks, probs = _shift_law(m)
  for d in (dy, dx):
    assert set(np.unique(d)) <= set(ks)
    freq = np.array([(d == k).mean() for k in ks])
    bound = 4 * np.sqrt(probs * (1 - probs) / d.size) + 1e-9
    np.testing.assert_array_less(np.abs(freq - probs), bound)
  assert abs(np.corrcoef(dy, dx)[0, 1]) < 0.1  # independent axes


def test_shift_uniform_pad_crop_integer_magnitude():
  ks, probs = _shift_law(4.0)
  np.testing.assert_allclose(probs, np.full(9, 1 / 9))
  ks, probs = _shift_law(0.0)
  assert list(ks) == [0] and probs[0] == 1.0


def test_shift_fills_zeros_outside():
  x = jnp.ones((2, 4, 4, 1))
  out = jax.jit(ops.flip_translate)(x, jnp.array([1, -2]), jnp.array([0, 1]),
                                    jnp.array([False, True]))
  np.testing.assert_array_equal(out[0, 0], 0.0)
  np.testing.assert_array_equal(out[0, 1:], 1.0)
  np.testing.assert_array_equal(out[1, 2:], 0.0)
  np.testing.assert_array_equal(out[1, :2, 0], 0.0)


def test_rotate_quarter_turn_equals_rot90():
  x = jax.random.uniform(jax.random.key(0), (2, 5, 5, 3))
  out = jax.jit(ops.rotate_scale)(x, jnp.full((2,), math.pi / 2), jnp.ones(2))
  np.testing.assert_allclose(out, np.rot90(np.asarray(x), axes=(1, 2)), atol=1e-5)


def test_noise_std_matches_magnitude():
  x, y = _batch()
  xa, _ = _only(x, y, noise_std=0.1)
  assert abs(float(jnp.std(xa - x)) - 0.1) < 0.004


@pytest.mark.parametrize("op", ["mixup_alpha", "cutmix_alpha"])
def test_labels_sum_to_one_mixing(op):
  x, y = _batch()
  xa, ya = _only(x, y, **{op: 1.0})
  np.testing.assert_allclose(ya.sum(1), 1.0, rtol=1e-6)
  assert float(ya.min()) >= 0.0 and float((ya > 0).sum(1).max()) == 2.0
  assert not np.array_equal(xa, x)


def test_labels_sum_to_one_all_ops_strength_two():
  x, y = _batch()
  _, ya = _run(ALL_OPS, 2.0, x, y)
  np.testing.assert_allclose(ya.sum(1), 1.0, rtol=1e-6)


def _constant_images():
  """Image k is constant k / N: a pixel's value tells which image it came from."""
  x = jnp.broadcast_to(jnp.arange(N, dtype=jnp.float32)[:, None, None, None] / N,
                       (N, *SHAPE))
  return x, jax.nn.one_hot(jnp.arange(N), N)


def test_cutmix_label_weight_equals_pasted_area():
  x, y = _constant_images()
  xa, ya = _only(x, y, cutmix_alpha=1.0)
  own = np.mean(np.asarray(xa) == np.asarray(x), axis=(1, 2, 3))
  np.testing.assert_allclose(np.asarray(ya)[np.arange(N), np.arange(N)], own, atol=1e-6)
  assert 0 < own.mean() < 1


def test_mixup_image_and_label_use_same_lambda():
  x, y = _constant_images()
  xa, ya = _only(x, y, mixup_alpha=1.0)
  np.testing.assert_allclose(xa[:, 0, 0, 0], ya @ (jnp.arange(N, dtype=jnp.float32) / N),
                             rtol=1e-5, atol=1e-6)


def test_mixup_lambda_distribution_is_beta():
  alpha = 0.4
  u = jax.random.uniform(jax.random.key(0), (ops.BETA_ROWS, 20000))
  beta = jax.jit(ops.beta)
  lam = np.asarray(beta(u, jnp.float32(alpha)))
  assert abs(lam.mean() - 0.5) < 0.01
  assert abs(lam.var() - 1 / (4 * (2 * alpha + 1))) < 0.004  # Beta(a, a) variance
  assert np.all(beta(u, jnp.float32(0.0)) == 1.0)


def test_same_key_same_output():
  x, y = _batch()
  assert_trees_equal(_run(ALL_OPS, 1.0, x, y, seed=3), _run(ALL_OPS, 1.0, x, y, seed=3))


def test_different_keys_different_outputs():
  x, y = _batch()
  xa, _ = _run(ALL_OPS, 1.0, x, y, seed=1)
  xb, _ = _run(ALL_OPS, 1.0, x, y, seed=2)
  assert not np.any(np.all(np.asarray(xa) == np.asarray(xb), axis=(1, 2, 3)))
  xa, _ = _only(x, y, seed=1, max_shift=2.0, flip_prob=0.5)
  xb, _ = _only(x, y, seed=2, max_shift=2.0, flip_prob=0.5)
  assert not np.array_equal(xa, xb)


def test_vmap_equals_member_loop():
  members = 3
  x, y = _batch()
  keys = jax.random.split(jax.random.key(7), members)
  mags = jax.vmap(lambda s: augment.magnitudes(ALL_OPS, s))(jnp.array([0.5, 1.0, 2.0]))
  got = vaug(keys, x, y, mags, ALL_OPS, 1)
  loop = [aug(keys[i], x, y, jax.tree.map(lambda m: m[i], mags), policy=ALL_OPS)
          for i in range(members)]
  want = jax.tree.map(lambda *a: jnp.stack(a), *loop)
  assert_trees_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_vmap_equals_member_loop_images_batched():
  x, y = _batch(n=4)
  xs, ys = jnp.stack([x, x[::-1]]), jnp.stack([y, y[::-1]])
  keys = jax.random.split(jax.random.key(7), 2)
  mags = jax.vmap(lambda s: augment.magnitudes(ALL_OPS, s))(jnp.array([1.0, 2.0]))
  f = jax.jit(jax.vmap(augment.augment_batch, in_axes=(0, 0, 0, 0, None, None)),
              static_argnums=(4, 5))
  got = f(keys, xs, ys, mags, ALL_OPS, 3)
  loop = [aug(keys[i], xs[i], ys[i], jax.tree.map(lambda m: m[i], mags), policy=ALL_OPS,
              multiplicity=3) for i in range(2)]
  assert_trees_allclose(got, jax.tree.map(lambda *a: jnp.stack(a), *loop),
                        rtol=1e-5, atol=1e-5)


def test_override_is_traced_grid_axis():
  x, y = _batch()

  @jax.jit
  def per_member(key, shift):
    mags = augment.magnitudes(ALL_OPS, 1.0, **{**OFF, "max_shift": shift})
    return augment.augment_batch(key, x, y, mags, ALL_OPS)

  xa, _ = jax.vmap(per_member)(jax.random.split(jax.random.key(0), 2), jnp.array([0., 2.]))
  assert_trees_equal(xa[0], x)
  assert not np.array_equal(xa[1], x)


def test_magnitudes_linear_then_beyond():
  pol = augment.Policy(max_shift=4.0, beyond=(("max_shift", 2.0), ("rotate_deg", 10.0)))
  for s, shift, rot in [(0.0, 0.0, 0.0), (0.5, 2.0, 0.0), (1.0, 4.0, 0.0), (2.5, 13.0, 15.0)]:
    mags = jax.jit(functools.partial(augment.magnitudes, pol))(s)
    assert set(mags) == {"max_shift", "rotate_deg"}
    np.testing.assert_allclose([mags["max_shift"], mags["rotate_deg"]], [shift, rot])


def test_magnitudes_unknown_override_raises():
  with pytest.raises(ValueError, match="unknown augmentation ops"):
    augment.magnitudes(augment.Policy(), 1.0, blur=1.0)
  with pytest.raises(ValueError, match="unknown augmentation op"):
    augment.Policy(beyond=(("blur", 1.0),))
  hash(augment.Policy(beyond=[["noise_std", 1]]))  # lists are frozen into tuples


def test_colour_ops_raise_on_grayscale():
  x, y = _batch(n=2, shape=(8, 8, 1))
  with pytest.raises(ValueError, match="RGB"):
    _run(augment.Policy(), 1.0, x, y, hue=0.1)


@pytest.mark.parametrize("dataset,shape", [
    ("digits", (8, 8, 1)), ("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)),
    ("svhn_cropped", (32, 32, 3)), ("unknown_set", (20, 20, 1)), ("mnist1d", SEQ),
    ("unknown_sequences", SEQ)])
def test_policy_no_flips_or_colour_where_wrong(dataset, shape):
  mags = augment.magnitudes(augment.policy_for(dataset, shape), 3.0)
  assert "flip_prob" not in mags and "max_shift" in mags
  if shape[-1] == 1:
    assert not {"saturation", "hue", "brightness", "contrast"} & set(mags)
  if shape[1] == 1:  # 1-D sequences: no rotation or zoom either
    assert not {"rotate_deg", "scale", "cutmix_alpha"} & set(mags)


def test_policy_mnist1d_recipe_then_mixup_above_one():
  def active(s):
    return {k: round(float(v), 6) for k, v in augment.magnitudes(M1D, s).items()
            if float(v) > 0}
  assert active(1.0) == {"max_shift": 4.0, "cutout_frac": 0.15, "noise_std": 0.15}
  assert active(2.0) == {"max_shift": 8.0, "cutout_frac": 0.3, "mixup_alpha": 0.4,
                         "noise_std": 0.3}
  assert active(0.5)["max_shift"] == 2.0 and "mixup_alpha" not in active(1.0)
  assert M1D.value_range is None and M1D.cutout_fill == 0.0
  assert augment.policy_for("mnist1d:1.0.0", SEQ) == M1D


@pytest.mark.parametrize("m", [4.0, 1.5])
def test_sequence_shift_only_along_sequence_never_blanks(m):
  c = SEQ[0] // 2
  x = jnp.zeros((N, *SEQ)).at[:, c].set(1.0)
  _, y = _seq_batch()
  dys = []
  for seed in range(32):
    xa, _ = _only_seq(x, y, seed=seed, max_shift=m)
    xa = np.asarray(xa)[:, :, 0, 0]
    assert np.all(xa.sum(1) == 1.0)  # a pure shift along H: W = 1 is never shifted
    dys.append(np.argmax(xa, axis=1) - c)
  dy = np.concatenate(dys)
  ks, probs = _shift_law(m)
  assert set(np.unique(dy)) <= set(ks)
  freq = np.array([(dy == k).mean() for k in ks])
  np.testing.assert_array_less(np.abs(freq - probs), 4 * np.sqrt(probs * (1 - probs) / dy.size))


def test_sequence_cutout_zeroes_one_segment_not_clipped():
  x, y = _seq_batch()
  x = x + 10.0  # every value far above 1: a clip to [0, 1] would show
  for seed in range(4):
    xa, _ = _only_seq(x, y, seed=seed, cutout_frac=0.15)  # 0.15 * 40 = 6 points
    xa, xn = np.asarray(xa)[:, :, 0, 0], np.asarray(x)[:, :, 0, 0]
    erased = xa == 0.0
    np.testing.assert_array_equal(xa[~erased], xn[~erased])
    count = erased.sum(1)
    assert count.min() >= 3 and count.max() <= 6
    for row in erased:  # one contiguous segment
      idx = np.flatnonzero(row)
      assert idx[-1] - idx[0] + 1 == len(idx)


def test_sequence_recipe_strength_one_standardized_values_survive():
  x, y = _seq_batch()
  xa, ya = _run(M1D, 1.0, x, y)
  assert_trees_equal(ya, y)  # no mixup at s = 1
  xa, xn = np.asarray(xa), np.asarray(x)
  assert xa.min() < -3 and xa.max() > 3  # not clipped to [0, 1]
  assert np.isfinite(xa).all() and not np.array_equal(xa, xn)
  xs, _ = _only_seq(x, y, max_shift=4.0, cutout_frac=0.15)
  xs = np.asarray(xs)
  for out, inp in zip(xs, xn):  # shift and cutout only move values or write 0
    assert set(out.ravel()) <= set(inp.ravel()) | {0.0}


def test_sequence_noise_std_in_standardized_units():
  x, y = _seq_batch()
  xa, _ = _only_seq(x, y, noise_std=0.15)
  assert abs(float(jnp.std(xa - x)) - 0.15) < 0.006


def test_sequence_mixup_above_strength_one_labels_sum_to_one():
  x, y = _seq_batch()
  xa, ya = _run(M1D, 2.0, x, y)
  np.testing.assert_allclose(ya.sum(1), 1.0, rtol=1e-6)
  assert float((ya > 0).sum(1).max()) == 2.0


def test_sequence_cutmix_pastes_a_segment_labels_by_area():
  pol = augment.Policy(cutmix_alpha=1.0, value_range=None)
  x = jnp.broadcast_to(jnp.arange(N, dtype=jnp.float32)[:, None, None, None], (N, *SEQ))
  y = jax.nn.one_hot(jnp.arange(N), N)
  xa, ya = _run(pol, 1.0, x, y)
  own = np.asarray(xa)[:, :, 0, 0] == np.asarray(x)[:, :, 0, 0]
  np.testing.assert_allclose(np.asarray(ya)[np.arange(N), np.arange(N)], own.mean(1),
                             atol=1e-6)
  for row in ~own:
    idx = np.flatnonzero(row)
    assert len(idx) == 0 or idx[-1] - idx[0] + 1 == len(idx)
  assert 0.3 < 1 - own.mean() < 0.7  # pasted fraction 1 - lam: mean 1/2 for Beta(1, 1)


def test_sequence_rotation_raises():
  x, y = _seq_batch(n=4)
  with pytest.raises(ValueError, match="2-D"):
    _run(augment.Policy(rotate_deg=10.0), 1.0, x, y)


@pytest.mark.parametrize("value_range,low", [((0.0, 1.0), 0.0), (None, -6.0)])
def test_colour_clips_to_value_range_only(value_range, low):
  x = jnp.full((4, *SEQ), -5.0)
  _, y = _seq_batch(n=4)
  xa, _ = _run(augment.Policy(brightness=0.5, value_range=value_range), 1.0, x, y)
  assert float(xa.min()) >= low and (value_range is not None or float(xa.max()) < -4.0)


def test_policy_digits_runs_finite_strength_three():
  pol = augment.policy_for("digits", (8, 8, 1))
  x, y = _batch(n=8, shape=(8, 8, 1))
  xa, _ = _run(pol, 3.0, x, y)
  assert xa.shape == x.shape and np.isfinite(np.asarray(xa)).all()
  assert not np.array_equal(xa, x)


def test_policy_cifar_standard_recipe_strength_one():
  pol = augment.policy_for("cifar10:3.0.2", (32, 32, 3))
  mags = augment.magnitudes(pol, 1.0)
  active = {k: float(v) for k, v in mags.items() if float(v) > 0}
  assert active == {"max_shift": 4.0, "flip_prob": 0.5}
  assert hash(pol) == hash(augment.policy_for("cifar10", (32, 32, 3)))


def test_drop_inactive_keeps_used_ops_only():
  pol = augment.policy_for("cifar10", (32, 32, 3))
  mags = jax.vmap(lambda s: augment.magnitudes(pol, s))(jnp.array([0.0, 0.5, 1.0]))
  assert set(augment.drop_inactive(mags)) == {"max_shift", "flip_prob"}
  mags = jax.vmap(lambda s: augment.magnitudes(pol, s))(jnp.array([0.0, 1.5]))
  assert set(augment.drop_inactive(mags)) == set(mags)
  x, y = _batch(n=4)
  assert_trees_equal(aug(jax.random.key(0), x, y, {}, policy=pol), (x, y))


def test_noise_quantised_normal_moments():
  z = np.asarray(jax.jit(ops.normal16, static_argnums=1)(jax.random.key(0), (50000,)))
  assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.02
  assert abs(np.mean(np.abs(z) > 1.96) - 0.05) < 0.005


def test_preview_rows_share_draws_strength_zero_is_input():
  from lrjax.augment import preview as augment_preview
  imgs = (np.arange(3 * 8 * 8).reshape(3, 8, 8, 1) % 256).astype(np.uint8)
  pol = augment.policy_for("digits", (8, 8, 1))
  rows = augment_preview.augment_rows(imgs, [0.0, 1.0, 1.0], pol, seed=1)
  np.testing.assert_allclose(rows[0], imgs / np.float32(255.0), rtol=1e-6)  # XLA: x * (1/255)
  np.testing.assert_array_equal(rows[1], rows[2])  # one key for every row


@pytest.mark.parametrize("dataset", ["digits", "mnist1d"])
def test_preview_png_written(dataset, tmp_path):
  from lrjax.augment import preview as augment_preview
  path = augment_preview.write_preview(dataset, [0, 1, 2], str(tmp_path / "p.png"), 4)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_preview_sequences_line_plots_rows_examples_unclipped():
  from lrjax.augment import preview as augment_preview
  x = np.asarray(_seq_batch(n=3)[0])
  rows = augment_preview.augment_rows(x, [0.0, 1.0], M1D)
  np.testing.assert_array_equal(rows[0], x)  # float features: not scaled, not clipped
  fig = augment_preview.preview_figure(x, [0.0, 1.0, 2.0, 3.0], M1D, labels=[1, 2, 3])
  assert len(fig.axes) == 3 * 4  # one row per example, one column per strength
  assert all(len(ax.lines) == 2 for ax in fig.axes)  # the input (grey) and augmented
  assert fig.axes[0].get_ylabel() == "label 1"


def test_preview_picks_one_per_class_first():
  from lrjax.augment import preview as augment_preview
  idx = augment_preview.pick_examples(np.array([0, 0, 1, 1, 2, 2]), 4)
  assert idx.tolist() == [0, 2, 4, 1]


def test_drop_inactive_same_output_as_unpruned():
  pol = augment.policy_for("digits", (8, 8, 1))
  mags = jax.vmap(lambda s: augment.magnitudes(pol, s))(jnp.array([0.0, 0.5, 1.0]))
  pruned = augment.drop_inactive(mags)
  assert set(mags) - set(pruned) == {"scale", "cutout_frac"}
  x, y = _batch(n=8, shape=(8, 8, 1))
  keys = jax.random.split(jax.random.key(0), 3)
  assert_trees_equal(vaug(keys, x, y, pruned, pol, 1), vaug(keys, x, y, mags, pol, 1))


def test_op_registry_order_rows_and_policy_fields_agree():
  # The order ops apply in and the uniform rows they read fix every output bit.
  assert augment.OPS == (
      "max_shift", "flip_prob", "rotate_deg", "scale", "brightness", "contrast",
      "saturation", "hue", "cutout_frac", "mixup_alpha", "cutmix_alpha", "noise_std")
  rows = [draw for stage in augment.STAGES for draw in stage.draws]  # the table's rows
  assert rows == [("shift", 2), ("flip", 1), ("rotate", 1), ("scale", 1),
                  ("brightness", 1), ("contrast", 1), ("saturation", 1), ("hue", 1),
                  ("cutout", 2), ("mixup_partner", 1), ("mixup_beta", ops.BETA_ROWS),
                  ("cutmix_partner", 1), ("cutmix_beta", ops.BETA_ROWS), ("cutmix_box", 2)]
  # Each op is a Policy field with the registry's default, documented in its words.
  fields = {f.name: f.default for f in dataclasses.fields(augment.Policy)}
  doc = " ".join(augment.Policy.__doc__.split())
  for op, entry in augment.OP_REGISTRY.items():
    assert fields[op] == entry.default
    assert f"{op}: {entry.meaning}" in doc
  assert [st.name for st in augment.STAGES] == [
      "flip_translate", "rotate_scale", "brightness", "contrast", "saturation_hue",
      "colour_clip", "cutout", "mixup", "cutmix", "noise"]
