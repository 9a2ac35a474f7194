"""Test support: recipes from configs/, and run directories whose checkpoints are written without training."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from pggan.model import networks
from pggan.training import train_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Set by conftest.py: one persistent compilation cache for the whole test session, shared by every
# subprocess, so a program compiled once (the same executable, hence the same results) is not compiled again.
COMPILATION_CACHE_ENV = "PGGAN_TEST_COMPILATION_CACHE"


def load_module(relative_path: str, name: str | None = None):
    """The Python file REPO/<relative_path> (a recipe, a tool) imported as a module of its own."""
    name = name or relative_path.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_recipe(name: str) -> ml_collections.ConfigDict:
    """get_config() of configs/<name>.py."""
    return load_module(f"configs/{name}.py", f"recipe_{name}").get_config()


def subprocess_env(num_devices: int = 1, compilation_cache: str | None = None, **extra: str) -> dict[str, str]:
    """Environment of a pggan subprocess in a test: this checkout on the path, CPU with `num_devices` fake
    devices, unoptimised (fast) XLA compiles and a persistent compilation cache (`compilation_cache`, or
    the session's), plus `extra` variables."""
    env = {
        **os.environ,
        "PYTHONPATH": REPO,
        "JAX_PLATFORMS": "cpu",
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={num_devices}",
    }
    cache = compilation_cache or os.environ.get(COMPILATION_CACHE_ENV)
    if cache:
        env.update(
            JAX_COMPILATION_CACHE_DIR=cache,
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
    env.update(extra)
    return env


def with_random_biases(params: dict, seed: int) -> dict:
    """At init all biases are zero, so a generator's image of the zero input would be flat grey."""
    rng = np.random.default_rng(seed)
    return jax.tree.map_with_path(
        lambda path, x: (
            rng.normal(0, 0.5, x.shape).astype(np.float32)
            if any(getattr(k, "key", None) == "bias" for k in path)
            else np.asarray(x)
        ),
        params,
    )


def write_checkpoints(workdir, config: ml_collections.ConfigDict, stages: Sequence[tuple[int, int, float]]) -> None:
    """Writes a checkpoint per (step, resolution, alpha): raw and EMA generators differ, each stage differs."""
    spec = networks.ModelSpec.from_config(config.model)
    for k, (step, resolution, alpha) in enumerate(stages):
        g, d = networks.build_networks(spec, seed=k)
        g = networks.parameters(g)
        train_state.save_networks(
            str(workdir),
            config,
            with_random_biases(g, 10 * k + 1),
            networks.parameters(d),
            with_random_biases(g, 10 * k + 2),
            nimg=step,
            resolution=resolution,
            alpha=alpha,
        )
