"""Checks a training config and workdir before anything is compiled: one-line errors naming the field.

Every check here runs in milliseconds on the host; a config that passes compiles and runs. Valid
settings measured not to train (docs/loss_comparison.md) pass; `known_failures` names them and their
fix, and the trainer logs that as a warning.
"""

from __future__ import annotations

import math
import os
import tempfile

import ml_collections

from pggan import disk, landscape, losses, metrics, microbatching, networks, normalization
from pggan.schedule import Schedule

ON_DEVICE_MODES = ("auto", "always", "never")


class ConfigError(ValueError):
    """An impossible or inconsistent setting; the message names the field and the fix."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_power_of_two(x) -> bool:
    return isinstance(x, int) and x > 0 and x & (x - 1) == 0


def validate_training_config(config: ml_collections.ConfigDict, num_devices: int
                             ) -> tuple[networks.ModelSpec, losses.LossConfig, Schedule]:
    """Validates `config` for `num_devices` devices; returns the parsed model, loss and schedule."""
    try:
        spec = networks.ModelSpec.from_config(config.model)
        loss = losses.LossConfig.from_config(config.loss)
        normalization.NormalizationConfig.from_config(config.d_normalization)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None
    _require(isinstance(config.seed, int) and 0 <= config.seed < 2**32,
             f"config.seed must be an integer in [0, 2**32), got {config.seed!r}")
    _require(0.0 <= config.ema.beta < 1.0, f"config.ema.beta must be in [0, 1), got {config.ema.beta}")
    _require(config.ema.half_life_kimg >= 0 and config.ema.rampup >= 0,
             "config.ema.half_life_kimg and config.ema.rampup must be >= 0")
    schedule = _validate_schedule(config.schedule, spec, num_devices, config.ema)
    for name in ("g_beta1", "g_beta2", "d_beta1", "d_beta2"):
        value = config.optimizer[name]
        _require(0.0 <= value < 1.0, f"config.optimizer.{name} must be in [0, 1), got {value}")
    _require(config.optimizer.eps > 0, f"config.optimizer.eps must be > 0, got {config.optimizer.eps}")
    _require(config.checkpoint.keep >= 1, f"config.checkpoint.keep must be >= 1, got {config.checkpoint.keep}")
    _require(config.checkpoint.every_ticks >= 1,
             f"config.checkpoint.every_ticks must be >= 1, got {config.checkpoint.every_ticks}")
    _require(config.samples.every_ticks >= 1,
             f"config.samples.every_ticks must be >= 1, got {config.samples.every_ticks}")
    _require(config.samples.batch_size >= 1, f"config.samples.batch_size must be >= 1, got {config.samples.batch_size}")
    _require(config.max_consecutive_nonfinite >= 0,
             f"config.max_consecutive_nonfinite must be >= 0 (0 = no limit), got {config.max_consecutive_nonfinite}")
    _require(config.dataset.on_device in ON_DEVICE_MODES,
             f"config.dataset.on_device must be one of {ON_DEVICE_MODES}, got {config.dataset.on_device!r}")
    _validate_metrics(config.metrics)
    return spec, loss, schedule


def known_failures(loss: losses.LossConfig, norm: normalization.NormalizationConfig) -> list[str]:
    """One line per valid setting of `loss` and `norm` measured not to train, with its fix."""
    if (loss.name == "wgan" and norm.method == "gran" and not loss.has_gradient_penalty
            and loss.drift < landscape.WGAN_GRAN_DRIFT):
        return [f"config.loss.name='wgan' with d_normalization.method='gran', no penalty and loss.drift={loss.drift:g}: "
                "the critic's scores grow without bound and the generator stops learning (docs/loss_comparison.md); "
                f"set --config.loss.drift={landscape.WGAN_GRAN_DRIFT:g}"]
    return []


def _validate_metrics(config: ml_collections.ConfigDict) -> None:
    try:
        metrics.parse_metric_names(config.names)
    except metrics.MetricInputError as e:
        raise ConfigError(f"config.metrics.names: {e}") from None
    _require(config.num_images >= metrics.MIN_IMAGES,
             f"config.metrics.num_images must be >= {metrics.MIN_IMAGES}, got {config.num_images}")
    _require(config.batch_size >= 1, f"config.metrics.batch_size must be >= 1, got {config.batch_size}")
    _require(config.every_kimg >= 0, f"config.metrics.every_kimg must be >= 0 (0 = off), got {config.every_kimg}")


def _validate_schedule(config: ml_collections.ConfigDict, spec: networks.ModelSpec, num_devices: int,
                       ema: ml_collections.ConfigDict) -> Schedule:
    initial = config.initial_resolution
    _require(_is_power_of_two(initial) and 4 <= initial <= spec.resolution,
             f"config.schedule.initial_resolution must be a power of two in [4, model.resolution="
             f"{spec.resolution}], got {initial}")
    _require(config.stabilize_kimg >= 0 and config.transition_kimg >= 0,
             "config.schedule.stabilize_kimg and transition_kimg must be >= 0")
    _require(config.total_kimg > 0, f"config.schedule.total_kimg must be > 0, got {config.total_kimg}")
    _require(config.minibatch_repeats >= 1 and config.d_repeats >= 1 and config.g_repeats >= 1,
             "config.schedule.minibatch_repeats, d_repeats and g_repeats must be >= 1")
    schedule = Schedule(config, spec.resolution, num_devices, ema=ema)
    tables = {"minibatch": schedule.minibatch_table, "g_lr": schedule.g_lr_table, "d_lr": schedule.d_lr_table,
              "tick_kimg": schedule.tick_kimg_table, "max_minibatch_per_device": schedule.max_minibatch_per_device,
              "max_microbatch_per_device": schedule.max_microbatch_per_device}
    for table, values in tables.items():
        for key in values:
            _require(_is_power_of_two(key) and key >= 4,
                     f"config.schedule.{table} has key {key!r}; keys must be resolutions 4, 8, 16, ...")
    group = spec.mbstd_group_size
    for resolution in schedule.resolutions():
        batch = schedule.minibatch_for(resolution)
        _require(batch >= num_devices,
                 f"the minibatch at {resolution}x{resolution} is {batch} after rounding down to a multiple of the "
                 f"{num_devices} devices; raise config.schedule.minibatch[{resolution}] (or minibatch_base) "
                 f"to at least {num_devices}")
        per_device = batch // num_devices
        if group > 1:
            g = min(group, per_device)
            _require(per_device % g == 0,
                     f"the minibatch at {resolution}x{resolution} gives {per_device} images per device, not "
                     f"divisible by the minibatch-stddev group size {g}; make config.schedule.minibatch"
                     f"[{resolution}] a multiple of {g * num_devices} or change model.mbstd_group_size")
        try:
            microbatching.microbatch_count(per_device, schedule.max_microbatch_per_device.get(resolution), group)
        except ValueError as e:
            raise ConfigError(f"config.schedule.max_microbatch_per_device[{resolution}]: {e}") from None
        for name, rate in (("g_lr", schedule.g_lr_table.get(resolution, schedule.g_lr_base)),
                           ("d_lr", schedule.d_lr_table.get(resolution, schedule.d_lr_base))):
            _require(rate > 0 and math.isfinite(rate),
                     f"config.schedule.{name} at {resolution}x{resolution} must be a positive number, got {rate}")
    return schedule


def check_workdir(workdir: str, required_bytes: int, purpose: str = "a checkpoint") -> None:
    """Creates the workdir if needed and checks it is writable with `required_bytes` free (for `purpose`)."""
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write_test_"):  # a unique name per process
            pass
    except OSError as e:
        raise ConfigError(f"--workdir {workdir!r} is not writable ({e.strerror}); choose another directory") from None
    free = disk.free_bytes(workdir)
    _require(free >= required_bytes,
             f"--workdir {workdir!r} has {disk.format_bytes(free)} free but {purpose} needs about "
             f"{disk.format_bytes(required_bytes)}; free disk space or choose another directory")
