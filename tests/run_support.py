"""Test support: recipes from configs/, and run directories whose checkpoints are written without training."""

from __future__ import annotations

import importlib.util
import os
from typing import Sequence

import jax
import ml_collections
import numpy as np

from pggan.model import networks

from pggan.training import train_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_recipe(name: str) -> ml_collections.ConfigDict:
    """get_config() of configs/<name>.py."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def with_random_biases(params: dict, seed: int) -> dict:
    """At init all biases are zero, so a generator's image of the zero input would be flat grey."""
    rng = np.random.default_rng(seed)
    return jax.tree.map_with_path(
        lambda path, x: rng.normal(0, 0.5, x.shape).astype(np.float32)
        if any(getattr(k, "key", None) == "bias" for k in path) else np.asarray(x), params)


def write_checkpoints(workdir, config: ml_collections.ConfigDict,
                      stages: Sequence[tuple[int, int, float]]) -> None:
    """Writes a checkpoint per (step, resolution, alpha): raw and EMA generators differ, each stage differs."""
    spec = networks.ModelSpec.from_config(config.model)
    for k, (step, resolution, alpha) in enumerate(stages):
        g, d = networks.build_networks(spec, seed=k)
        g = networks.parameters(g)
        train_state.save_networks(str(workdir), config, with_random_biases(g, 10 * k + 1),
                                 networks.parameters(d), with_random_biases(g, 10 * k + 2),
                                 nimg=step, resolution=resolution, alpha=alpha)
