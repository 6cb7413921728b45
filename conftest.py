"""Test-wide JAX settings, for the tests and the package's doctests alike.

* The suite runs in the configuration the ``lrjax`` command uses: one CPU device
  per core (members split over them).
* Silent broadcasting across the member axis fails loudly.
"""
import jax

from lrjax.engine import devices

devices.use_cpu_cores()
jax.config.update("jax_numpy_rank_promotion", "raise")
