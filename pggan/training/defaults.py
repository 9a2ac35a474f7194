"""The default training config as an ml_collections ConfigDict: the official PGGAN v2 settings.

Recipes in `configs/` start from `default_config()` and override what they need; every field can be
overridden on the command line: `--config.schedule.total_kimg=100`. The fields, their defaults,
meanings and checks are defined once, in `pggan.training.config` (`python -m pggan.main
--config=... --show_config` lists them with their values).
"""

from __future__ import annotations

import ml_collections

from pggan.training.config import TrainingConfig

# Official v2 presets (config.py): {devices: (minibatch_base, minibatch table, learning-rate table)}.
V2_PRESETS = {
    1: (4, {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}, {1024: 0.0015}),
    2: (8, {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8}, {512: 0.0015, 1024: 0.002}),
    4: (16, {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16}, {256: 0.0015, 512: 0.002, 1024: 0.003}),
    8: (32, {4: 512, 8: 256, 16: 128, 32: 64, 64: 32}, {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003}),
}


def v2_schedule_presets() -> dict:
    """`schedule.by_device_count` entries reproducing the official v2 1/2/4/8-GPU presets."""
    return {
        devices: {"minibatch_base": base, "minibatch": dict(table), "g_lr": dict(lrs), "d_lr": dict(lrs)}
        for devices, (base, table, lrs) in V2_PRESETS.items()
    }


def default_config() -> ml_collections.ConfigDict:
    """Every field of `TrainingConfig` at its default, as a ConfigDict that recipes and flags edit."""
    return ml_collections.ConfigDict(TrainingConfig().to_dict())
