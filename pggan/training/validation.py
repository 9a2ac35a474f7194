"""A run's plan, checked before anything is compiled: one-line errors naming the field and the fix.

`plan_run` is the one place a training config is parsed (`TrainingConfig.parse`, the field checks)
and checked against the devices (minibatch splits, learning rates and tick lengths per resolution);
the trainer takes the resulting `RunPlan`. Every check runs in milliseconds on the host; a plan
that passes compiles and runs. Valid settings measured not to train (docs/loss_comparison.md) pass;
`known_failures` names them and their fix, and the trainer logs that as a warning.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from pggan import disk, parallel
from pggan.config_section import is_int_at_least, is_number_at_least
from pggan.model import losses, normalization
from pggan.training import landscape, microbatching, transfer
from pggan.training.config import ConfigError, TrainingConfig
from pggan.training.schedule import Schedule


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What a training run computes: its typed config, its schedule for the mesh, and the mesh."""

    config: TrainingConfig
    schedule: Schedule
    mesh: jax.sharding.Mesh


def plan_run(
    config: Mapping[str, Any] | TrainingConfig, devices: Sequence[jax.Device] | None = None, workdir: str | None = None
) -> RunPlan:
    """Parses `config` (a ConfigDict, unless already typed) and checks it for `devices` (default: all), for
    the run in `workdir` (if given: a fine-tuning run that has checkpoints resumes without its source).

    Raises ConfigError (a one-line message naming the field) for any impossible setting.
    """
    typed = transfer.with_starting_resolution(
        config if isinstance(config, TrainingConfig) else TrainingConfig.parse(config), workdir
    )
    mesh = parallel.make_mesh(devices)
    return RunPlan(typed, schedule_for_devices(typed, mesh.size), mesh)


def schedule_for_devices(config: TrainingConfig, num_devices: int) -> Schedule:
    """The schedule of `config` on `num_devices` devices, every resolution's minibatch, learning rates,
    tick length and microbatch split checked."""
    spec = config.model
    schedule = Schedule(config.schedule, spec.resolution, num_devices, ema=config.ema)
    group = spec.mbstd_group_size
    unit = num_devices * max(group, 1)  # a minibatch that divides over the devices and the stddev groups
    for resolution in schedule.resolutions():
        batch = schedule.minibatch_for(resolution)
        _require(
            is_int_at_least(batch, num_devices) and batch % num_devices == 0,
            f"the minibatch at {resolution}x{resolution} is {batch}, which does not divide over the {num_devices} "
            f"devices; set config.schedule.minibatch[{resolution}] (or minibatch_base) to a multiple of "
            f"{unit}, e.g. {max(1, round(batch / unit)) * unit}",
        )
        tick = schedule.tick_kimg_for(resolution)
        _require(
            is_number_at_least(tick, 0) and tick > 0,
            f"config.schedule.tick_kimg at {resolution}x{resolution} must be a positive number, got {tick}",
        )
        per_device = batch // num_devices
        if group > 1:
            g = min(group, per_device)
            _require(
                per_device % g == 0,
                f"the minibatch at {resolution}x{resolution} gives {per_device} images per device, not "
                f"divisible by the minibatch-stddev group size {g}; make config.schedule.minibatch"
                f"[{resolution}] a multiple of {g * num_devices} or change model.mbstd_group_size",
            )
        try:
            microbatching.microbatch_count(per_device, schedule.config.max_microbatch_per_device.get(resolution), group)
        except ValueError as e:
            raise ConfigError(f"config.schedule.max_microbatch_per_device[{resolution}]: {e}") from None
        for name, rate in (("g_lr", schedule.g_lr_for(resolution)), ("d_lr", schedule.d_lr_for(resolution))):
            _require(
                is_number_at_least(rate, 0) and rate > 0,
                f"config.schedule.{name} at {resolution}x{resolution} must be a positive number, got {rate}",
            )
    return schedule


def known_failures(loss: losses.LossConfig, norm: normalization.NormalizationConfig) -> list[str]:
    """One line per valid setting of `loss` and `norm` measured not to train, with its fix."""
    if (
        loss.name == "wgan"
        and norm.method == "gran"
        and not loss.has_gradient_penalty
        and loss.drift < landscape.WGAN_GRAN_DRIFT
    ):
        return [
            f"config.loss.name='wgan' with d_normalization.method='gran', no penalty and loss.drift={loss.drift:g}: "
            "the critic's scores grow without bound and the generator stops learning (docs/loss_comparison.md); "
            f"set --config.loss.drift={landscape.WGAN_GRAN_DRIFT:g}"
        ]
    return []


def check_workdir(workdir: str, required_bytes: int, purpose: str = "a checkpoint") -> None:
    """Creates the workdir if needed and checks it is writable with `required_bytes` free (for `purpose`)."""
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write_test_"):  # a unique name per process
            pass
    except OSError as e:
        raise ConfigError(f"--workdir {workdir!r} is not writable ({e.strerror}); choose another directory") from None
    free = disk.free_bytes(workdir)
    _require(
        free >= required_bytes,
        f"--workdir {workdir!r} has {disk.format_bytes(free)} free but {purpose} needs about "
        f"{disk.format_bytes(required_bytes)}; free disk space or choose another directory",
    )
