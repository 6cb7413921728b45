"""Test-wide JAX settings.

* The suite runs in the configuration the ``lrjax`` command uses: one CPU device
  per core (members split over them).
* Silent broadcasting across the member axis fails loudly.
"""
import jax

from lrjax.engine import devices as parallel

parallel.use_cpu_cores()
jax.config.update("jax_numpy_rank_promotion", "raise")
