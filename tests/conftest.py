"""Test-wide JAX settings: silent broadcasting across the member axis fails loudly."""
import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
