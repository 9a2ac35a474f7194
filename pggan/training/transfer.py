"""Fine-tuning: a new run that starts from trained networks (`config.init_from`) instead of random ones.

`init_from` names a run's workdir (or a checkpoint in it), a .pggan export made with --training_networks, or
an official (G, D, Gs) pickle (`pggan.network_sources`). The run is a fresh one, with its own counters from
zero, but
  - its schedule starts at the resolution those networks were trained to (`with_starting_resolution`
    sets config.schedule.initial_resolution to it before the schedule is planned), and
  - G, D and the EMA generator start from their weights (`start_from`, when no checkpoint of the run
    exists yet; a resumed run continues from its own checkpoints). Adam moments and counters start at zero.
The model settings must describe the same networks; any difference is refused in one line naming the
config.model fields to change. The source is read only until the run has a checkpoint: a resumed run takes
its starting resolution from its own checkpoints, so the source may be moved or deleted by then.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
from absl import logging

from pggan import checkpoint, network_sources
from pggan.errors import UserError
from pggan.training.config import TrainingConfig


class TransferError(UserError):
    """init_from names networks that this run cannot start from; the message says what to change."""


def _check_architecture(config: TrainingConfig, source: network_sources.Networks) -> None:
    ours, theirs = config.model.architecture(), source.spec.architecture()
    if differences := [name for name in ours if ours[name] != theirs[name]]:
        settings = " ".join(f"--config.model.{name}={theirs[name]}" for name in differences)
        raise TransferError(
            f"config.init_from={config.init_from} holds a different model ("
            f"{', '.join(f'{name} {theirs[name]} vs {ours[name]}' for name in differences)}); "
            f"train its architecture: {settings}"
        )


def _resumed_starting_resolution(workdir: str) -> int | None:
    """The schedule's starting resolution saved in the newest readable checkpoint of the run in `workdir`;
    None when it has none (a new run, or every checkpoint damaged)."""
    if not os.path.isdir(checkpoint.checkpoint_dir(workdir)):
        return None
    with checkpoint.CheckpointReader(workdir) as reader:
        for step in sorted(reader.manager.all_steps(), reverse=True):
            try:
                return int(json.loads(reader.meta(step)["config"])["schedule"]["initial_resolution"])
            except checkpoint.CheckpointDamaged:
                continue
    return None


def with_starting_resolution(config: TrainingConfig, workdir: str | None = None) -> TrainingConfig:
    """`config` with the schedule starting at the resolution of the init_from networks (unchanged without
    init_from); TransferError when their model differs from config.model. When the run in `workdir` already
    has a checkpoint, the resolution saved there is used and the source is not read."""
    if not config.init_from:
        return config
    resolution = _resumed_starting_resolution(workdir) if workdir else None
    if resolution is None:
        source = network_sources.load(config.init_from, ())
        _check_architecture(config, source)
        resolution = source.resolution
    return dataclasses.replace(config, schedule=dataclasses.replace(config.schedule, initial_resolution=resolution))


def start_from(config: TrainingConfig, state: dict) -> dict:
    """A new run's TrainState (replicated on the devices) with G, D and the EMA G of config.init_from put
    into it, on the shardings of `state`'s parameters; `state` itself without init_from."""
    if not config.init_from:
        return state
    source = network_sources.load(config.init_from, network_sources.ITEMS)
    _check_architecture(config, source)
    logging.info(
        "Starting from the networks of %s (%dx%d, trained for %.1f kimg).",
        config.init_from,
        source.resolution,
        source.resolution,
        source.meta.get("step", 0) / 1000,
    )
    for item in network_sources.ITEMS:
        state[item] = jax.tree.map(
            lambda new, old: jax.device_put(new, old.sharding), source.parameters[item], state[item]
        )
    return state
