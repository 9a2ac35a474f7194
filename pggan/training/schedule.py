"""The progressive training schedule: images seen -> level of detail, resolution, alpha, batch, lr.

A faithful re-derivation of the official `TrainingSchedule` (train.py):
  phase = floor(kimg / (stabilize + transition)), phase_kimg = kimg - phase * (stabilize + transition)
  lod = log2(R) - log2(initial_resolution) - phase - max(phase_kimg - stabilize, 0) / transition
  lod = max(lod, 0); resolution = 2 ** (log2(R) - floor(lod)); alpha = 1 - (lod - floor(lod)).
During a fade the minibatch, learning rates and tick length already use the new (higher)
resolution's values. The minibatch is capped at `max_minibatch_per_device * devices` as in the official
code; one that does not divide over the devices is refused by `pggan.training.validation` (the official code
rounded it down).
"""

from __future__ import annotations

import dataclasses
import math

from pggan.training.config import EmaConfig, ScheduleConfig


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


class Schedule:
    """Evaluates a schedule for a final resolution and a device count.

    `config` is the typed `schedule` section with its `by_device_count` entry for the device count
    applied; `ema` the `ema` section.
    """

    def __init__(self, config: ScheduleConfig, final_resolution: int, num_devices: int, ema: EmaConfig = EmaConfig()):
        config = config.for_devices(num_devices)
        self.final_log2 = int(math.log2(final_resolution))
        if config.fit_phases_to_total:
            # growths * (stabilize + transition) + one stabilize phase at the final resolution = total
            planned = self.growths(config) * (config.stabilize_kimg + config.transition_kimg) + config.stabilize_kimg
            scale = config.total_kimg / planned if planned > 0 else 1.0
            config = dataclasses.replace(
                config,
                stabilize_kimg=config.stabilize_kimg * scale,
                transition_kimg=config.transition_kimg * scale,
                fit_phases_to_total=False,
            )
        self.config = config
        self.ema = ema
        self.num_devices = num_devices

    def growths(self, config: ScheduleConfig | None = None) -> int:
        """Resolution doublings from the initial resolution to the final one."""
        return self.final_log2 - int(math.log2((config or self.config).initial_resolution))

    @property
    def total_kimg(self) -> float:
        return float(self.config.total_kimg)

    def lod_at(self, nimg: int) -> float:
        config = self.config
        kimg = nimg / 1000.0
        phase_dur = config.stabilize_kimg + config.transition_kimg
        phase_idx = int(math.floor(kimg / phase_dur)) if phase_dur > 0 else 0
        phase_kimg = kimg - phase_idx * phase_dur
        lod = self.final_log2 - math.floor(math.log2(config.initial_resolution)) - phase_idx
        if config.transition_kimg > 0:
            lod -= max(phase_kimg - config.stabilize_kimg, 0.0) / config.transition_kimg
        return max(lod, 0.0)

    def at(self, nimg: int) -> Phase:
        """The training parameters after `nimg` real images."""
        lod = self.lod_at(nimg)
        resolution = 2 ** (self.final_log2 - int(math.floor(lod)))
        minibatch = self.minibatch_for(resolution)
        return Phase(
            kimg=nimg / 1000.0,
            lod=lod,
            resolution=resolution,
            alpha=1.0 - (lod - math.floor(lod)),
            minibatch=minibatch,
            g_lr=self.g_lr_for(resolution),
            d_lr=self.d_lr_for(resolution),
            tick_kimg=self.tick_kimg_for(resolution),
            ema_beta=self.ema_decay(minibatch, nimg),
        )

    def ema_decay(self, minibatch: int, nimg: int) -> float:
        """Generator EMA decay per D step: the fixed beta, or the one of a half-life in images."""
        if self.ema.half_life_kimg <= 0:
            return self.ema.beta
        half_life = self.ema.half_life_kimg * 1000
        if self.ema.rampup > 0:
            half_life = min(half_life, nimg * self.ema.rampup)
        return 0.5 ** (minibatch / max(half_life, 1e-8))

    def minibatch_for(self, resolution: int) -> int:
        """Global minibatch at a resolution: the table value, capped at `max_minibatch_per_device` per device.

        Unlike the official code, a minibatch that does not divide over the devices is not rounded
        down: `pggan.training.validation` refuses it.
        """
        minibatch = self.config.minibatch.get(resolution, self.config.minibatch_base)
        cap = self.config.max_minibatch_per_device.get(resolution)
        return minibatch if cap is None else min(minibatch, cap * self.num_devices)

    def g_lr_for(self, resolution: int) -> float:
        return self.config.g_lr.get(resolution, self.config.g_lr_base)

    def d_lr_for(self, resolution: int) -> float:
        return self.config.d_lr.get(resolution, self.config.d_lr_base)

    def tick_kimg_for(self, resolution: int) -> float:
        return self.config.tick_kimg.get(resolution, self.config.tick_kimg_base)

    def full_length_kimg(self) -> float:
        """Thousands of images until the final resolution is fully in and has had one stabilize phase."""
        config = self.config
        return self.growths() * (config.stabilize_kimg + config.transition_kimg) + config.stabilize_kimg

    def plan_text(self) -> str:
        """One line stating the plan, e.g. '4x4 -> 32x32, 140 kimg: 20 kimg at 4x4, then per resolution
        (8, 16, 32) a 20 kimg fade-in and 20 kimg stable'."""
        config, first = self.config, self.resolutions()[0]
        final = 2**self.final_log2
        text = f"{first}x{first} -> {final}x{final}, {config.total_kimg:.4g} kimg: "
        if not self.growths():
            return text + f"all at {final}x{final}"
        grown = ", ".join(str(r) for r in self.resolutions()[1:])
        text += (
            f"{config.stabilize_kimg:.4g} kimg at {first}x{first}, then per resolution ({grown}) a "
            f"{config.transition_kimg:.4g} kimg fade-in and {config.stabilize_kimg:.4g} kimg stable"
        )
        extra = config.total_kimg - self.full_length_kimg()
        if extra > 1e-9:
            text += f", then {extra:.4g} kimg more at {final}x{final}"
        elif self.shortfall():
            end = self.at(int(round(config.total_kimg * 1000)) - 1)
            text += f"; the run stops early, at {end.resolution}x{end.resolution}"
        return text

    def shortfall(self) -> str | None:
        """None when the run reaches the final resolution fully faded in, else a one-line warning with the fix."""
        end = self.at(int(round(self.config.total_kimg * 1000)) - 1)
        final = 2**self.final_log2
        if end.resolution == final and end.alpha >= 1.0:
            return None
        where = f"{end.resolution}x{end.resolution}" + (f" (fading in, alpha {end.alpha:.2f})" if end.alpha < 1 else "")
        return (
            f"the run ends at {where} of a {final}x{final} model: total_kimg={self.config.total_kimg:.4g} is shorter "
            f"than the {self.full_length_kimg():.4g} kimg the phases need; raise --config.schedule.total_kimg or "
            f"add --config.schedule.fit_phases_to_total=true to scale the phases into it"
        )

    def resolutions(self) -> list[int]:
        """Every resolution the schedule trains at, from the initial one to the final one."""
        return [2**k for k in range(int(math.log2(self.config.initial_resolution)), self.final_log2 + 1)]

    @property
    def d_steps_per_round(self) -> int:
        """Discriminator minibatches per round (each shows `Phase.minibatch` reals); G steps are
        `minibatch_repeats * g_repeats`."""
        return self.config.minibatch_repeats * self.config.d_repeats

    @staticmethod
    def crosses_lod_boundary(previous_lod: float | None, lod: float) -> bool:
        """Official Adam-reset rule: floor(lod) or ceil(lod) changed (always true at the start)."""
        if previous_lod is None:
            return True
        return (math.floor(lod) != math.floor(previous_lod)) or (math.ceil(lod) != math.ceil(previous_lod))
