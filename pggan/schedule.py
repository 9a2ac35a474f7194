"""The progressive training schedule: images seen -> level of detail, resolution, alpha, batch, lr.

A faithful re-derivation of the official `TrainingSchedule` (train.py):
  phase = floor(kimg / (stabilize + transition)), phase_kimg = kimg - phase * (stabilize + transition)
  lod = log2(R) - log2(initial_resolution) - phase - max(phase_kimg - stabilize, 0) / transition
  lod = max(lod, 0); resolution = 2 ** (log2(R) - floor(lod)); alpha = 1 - (lod - floor(lod)).
During a fade the minibatch, learning rates and tick length already use the new (higher)
resolution's values. The minibatch is capped at `max_minibatch_per_device * devices` as in the official
code; one that does not divide over the devices is refused by `pggan.validation` (the official code
rounded it down).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class Phase:
    """Training parameters for one round of `minibatch_repeats` minibatches.

    kimg: thousands of real images shown so far. lod: level of detail (0 = final resolution).
    resolution: active network resolution (int, power of two). alpha: fade-in weight of that
    resolution in [0, 1] (1 = fully in). minibatch: global minibatch size. g_lr, d_lr: Adam learning
    rates. tick_kimg: length of a progress tick in kimg.
    """

    kimg: float
    lod: float
    resolution: int
    alpha: float
    minibatch: int
    g_lr: float
    d_lr: float
    tick_kimg: float
    ema_beta: float


def _table(config: Mapping[str, Any], name: str) -> dict[int, float]:
    return {int(k): v for k, v in dict(config.get(name) or {}).items()}


class Schedule:
    """Evaluates the schedule of `config.schedule` for a final resolution and a device count."""

    def __init__(self, config: Mapping[str, Any], final_resolution: int, num_devices: int,
                 ema: Mapping[str, Any] | None = None):
        """config: the `schedule` section; ema: the `ema` section (beta, half_life_kimg, rampup)."""
        ema = dict(ema or {"beta": 0.999})
        self.ema_beta = float(ema["beta"])
        self.ema_half_life_kimg = float(ema.get("half_life_kimg", 0.0))
        self.ema_rampup = float(ema.get("rampup", 0.0))
        config = self._select_device_preset(config, num_devices)
        self.final_log2 = int(math.log2(final_resolution))
        self.initial_resolution = int(config["initial_resolution"])
        self.stabilize_kimg = float(config["stabilize_kimg"])
        self.transition_kimg = float(config["transition_kimg"])
        self.total_kimg = float(config["total_kimg"])
        self.minibatch_base = int(config["minibatch_base"])
        self.minibatch_table = _table(config, "minibatch")
        self.max_minibatch_per_device = _table(config, "max_minibatch_per_device")
        self.max_microbatch_per_device = _table(config, "max_microbatch_per_device")
        self.g_lr_base = float(config["g_lr_base"])
        self.g_lr_table = _table(config, "g_lr")
        self.d_lr_base = float(config["d_lr_base"])
        self.d_lr_table = _table(config, "d_lr")
        self.tick_kimg_base = float(config["tick_kimg_base"])
        self.tick_kimg_table = _table(config, "tick_kimg")
        self.minibatch_repeats = int(config["minibatch_repeats"])
        self.d_repeats = int(config["d_repeats"])
        self.g_repeats = int(config["g_repeats"])
        self.num_devices = num_devices

    @staticmethod
    def _select_device_preset(config: Mapping[str, Any], num_devices: int) -> dict[str, Any]:
        """Applies `by_device_count[n]` for the largest n <= num_devices (official 1/2/4/8-GPU presets)."""
        config = dict(config)
        presets = {int(k): v for k, v in dict(config.pop("by_device_count", None) or {}).items()}
        eligible = [n for n in presets if n <= num_devices]
        if eligible:
            config.update(dict(presets[max(eligible)]))
        return config

    def lod_at(self, nimg: int) -> float:
        kimg = nimg / 1000.0
        phase_dur = self.stabilize_kimg + self.transition_kimg
        phase_idx = int(math.floor(kimg / phase_dur)) if phase_dur > 0 else 0
        phase_kimg = kimg - phase_idx * phase_dur
        lod = self.final_log2 - math.floor(math.log2(self.initial_resolution)) - phase_idx
        if self.transition_kimg > 0:
            lod -= max(phase_kimg - self.stabilize_kimg, 0.0) / self.transition_kimg
        return max(lod, 0.0)

    def at(self, nimg: int) -> Phase:
        """The training parameters after `nimg` real images."""
        lod = self.lod_at(nimg)
        resolution = 2 ** (self.final_log2 - int(math.floor(lod)))
        minibatch = self.minibatch_for(resolution)
        return Phase(
            kimg=nimg / 1000.0, lod=lod, resolution=resolution, alpha=1.0 - (lod - math.floor(lod)),
            minibatch=minibatch,
            g_lr=self.g_lr_table.get(resolution, self.g_lr_base),
            d_lr=self.d_lr_table.get(resolution, self.d_lr_base),
            tick_kimg=self.tick_kimg_table.get(resolution, self.tick_kimg_base),
            ema_beta=self.ema_decay(minibatch, nimg))

    def ema_decay(self, minibatch: int, nimg: int) -> float:
        """Generator EMA decay per D step: the fixed beta, or the one of a half-life in images."""
        if self.ema_half_life_kimg <= 0:
            return self.ema_beta
        half_life = self.ema_half_life_kimg * 1000
        if self.ema_rampup > 0:
            half_life = min(half_life, nimg * self.ema_rampup)
        return 0.5 ** (minibatch / max(half_life, 1e-8))

    def minibatch_for(self, resolution: int) -> int:
        """Global minibatch at a resolution: the table value, capped at `max_minibatch_per_device` per device.

        Unlike the official code, a minibatch that does not divide over the devices is not rounded
        down: `pggan.validation` refuses it.
        """
        minibatch = self.minibatch_table.get(resolution, self.minibatch_base)
        if resolution in self.max_minibatch_per_device:
            minibatch = min(minibatch, self.max_minibatch_per_device[resolution] * self.num_devices)
        return minibatch

    def resolutions(self) -> list[int]:
        """Every resolution the schedule trains at, from the initial one to the final one."""
        return [2 ** k for k in range(int(math.log2(self.initial_resolution)), self.final_log2 + 1)]

    @property
    def d_steps_per_round(self) -> int:
        """Discriminator minibatches per round (each shows `Phase.minibatch` reals); G steps are
        `minibatch_repeats * g_repeats`."""
        return self.minibatch_repeats * self.d_repeats

    @staticmethod
    def crosses_lod_boundary(previous_lod: float | None, lod: float) -> bool:
        """Official Adam-reset rule: floor(lod) or ceil(lod) changed (always true at the start)."""
        if previous_lod is None:
            return True
        return (math.floor(lod) != math.floor(previous_lod)) or (math.ceil(lod) != math.ceil(previous_lod))
