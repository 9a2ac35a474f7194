"""Test-wide setup: 8 fake CPU devices, fast (unoptimised) compiles, one compilation cache per session,
and the session fixtures that many modules share.

The environment variables must be set before JAX initialises its backends, so they are set here, at
conftest import time, before any test module imports jax.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import pytest

from tests.run_support import COMPILATION_CACHE_ENV

jax.config.update("jax_disable_most_optimizations", True)

# One persistent compilation cache for the session's subprocesses (`run_support.subprocess_env`); under
# pytest-xdist the workers share the controller's (they inherit its environment).
if COMPILATION_CACHE_ENV not in os.environ:
    os.environ[COMPILATION_CACHE_ENV] = tempfile.mkdtemp(prefix="pggan-test-compiled-")
    atexit.register(shutil.rmtree, os.environ[COMPILATION_CACHE_ENV], True)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """A data_dir holding configs/tiny.py's dataset (synthetic16: 64 images, every level up to 16x16), prepared
    once and shared by every test of the session; models of the tiny recipe at 8x8 read it too."""
    from pggan.data.config import open_from_config
    from tests.run_support import load_recipe

    dataset = load_recipe("tiny").dataset
    dataset.data_dir = str(tmp_path_factory.mktemp("tiny_datasets"))
    open_from_config(dataset, resolution=16)
    return dataset.data_dir
