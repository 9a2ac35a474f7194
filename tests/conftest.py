"""Test-wide JAX setup: 8 fake CPU devices and fast (unoptimised) compiles.

The environment variable must be set before JAX initialises its backends, so it is set here,
at conftest import time, before any test module imports jax.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)
