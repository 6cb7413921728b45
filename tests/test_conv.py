"""Tests for lrjax.models.conv: PatchConv computes what nn.Conv computes, gradients included."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from lrjax.models.conv import PatchConv, extract_patches
from tree_helpers import assert_trees_allclose, assert_trees_equal

TOL = dict(rtol=1e-5, atol=1e-5)


def _input(shape=(3, 8, 8, 2)):
  return jax.random.normal(jax.random.key(0), shape)


def _pair(stride, padding, im2col="slices", features=4):
  ref = nn.Conv(features, (3, 3), strides=stride, padding=padding, name="conv")
  new = PatchConv(features, (3, 3), strides=stride, padding=padding, im2col=im2col,
                  name="conv")
  return ref, new


@pytest.mark.parametrize("stride, padding, im2col", [
    (1, "SAME", "slices"), (1, "SAME", "patches"), (2, "SAME", "slices"),
    (2, "SAME", "patches"), (2, "VALID", "slices"), (2, ((1, 0), (2, 1)), "slices")])
def test_forward_matches_nn_conv_for_each_padding(stride, padding, im2col):
  x = _input()
  ref, new = _pair(stride, padding, im2col)
  params = ref.init(jax.random.key(1), x)
  assert_trees_allclose(jax.jit(new.apply)(params, x), jax.jit(ref.apply)(params, x), **TOL)


@pytest.mark.parametrize("im2col", ["slices", "patches"])
@pytest.mark.parametrize("stride", [1, 2])
def test_gradients_match_nn_conv_under_jit(stride, im2col):
  x = _input()
  ref, new = _pair(stride, "SAME", im2col)
  params = ref.init(jax.random.key(1), x)

  def loss(p, x, module):
    return jnp.sum(jnp.sin(module.apply(p, x)))

  grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)
  assert_trees_allclose(grad(params, x, new), grad(params, x, ref), **TOL)


class _Net(nn.Module):
  patch: bool

  @nn.compact
  def __call__(self, x):
    if self.patch:
      return PatchConv(4, (3, 3), name="Conv_0")(x)
    return nn.Conv(4, (3, 3))(x)


def test_init_equals_nn_conv_when_named_alike():
  x = _input()
  key = jax.random.key(3)
  assert_trees_equal(_Net(patch=True).init(key, x), _Net(patch=False).init(key, x))


def test_vmap_over_kernels_matches_nn_conv_with_shared_input():
  x = _input()
  ref, new = _pair(2, "SAME")
  params = jax.vmap(lambda k: ref.init(k, x))(jax.random.split(jax.random.key(1), 5))
  apply_all = lambda m: jax.jit(jax.vmap(m.apply, in_axes=(0, None)))(params, x)
  out = apply_all(new)
  assert out.shape == (5, 3, 4, 4, 4)
  assert_trees_allclose(out, apply_all(ref), **TOL)


def test_forward_matches_nn_conv_without_bias_and_extra_batch_axes():
  x = _input((2, 3, 6, 6, 2))
  ref = nn.Conv(4, (3, 3), use_bias=False, name="conv")
  new = PatchConv(4, (3, 3), use_bias=False, name="conv")
  params = ref.init(jax.random.key(1), x)
  assert set(params["params"]) == {"kernel"}
  assert_trees_allclose(jax.jit(new.apply)(params, x), jax.jit(ref.apply)(params, x), **TOL)


def test_extract_patches_raises_for_unknown_method():
  with pytest.raises(ValueError, match="im2col"):
    extract_patches(_input(), (3, 3), (1, 1), "SAME", method="fft")


def test_dtype_computes_in_bf16_like_nn_conv_with_float32_params():
  x = _input()
  ref = nn.Conv(4, (3, 3), strides=2, dtype=jnp.bfloat16, name="conv")
  new = PatchConv(4, (3, 3), strides=2, dtype=jnp.bfloat16, name="conv")
  params = ref.init(jax.random.key(1), x)
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  out, expected = jax.jit(new.apply)(params, x), jax.jit(ref.apply)(params, x)
  assert out.dtype == expected.dtype == jnp.bfloat16
  assert_trees_allclose(out.astype(jnp.float32), expected.astype(jnp.float32),
                        rtol=2e-2, atol=2e-2)
