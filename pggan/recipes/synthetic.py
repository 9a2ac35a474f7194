"""Procedural synthetic images at any resolution (no data to download), for benchmarks and smoke runs.

    pggan-train --config=synthetic --workdir=runs/synthetic \
        --config.model.resolution=256 --config.dataset.name=synthetic256

Full-width official networks and the official 1-GPU v2 tables; pick the resolution on the command
line (give each resolution its own dataset.name).
"""

from pggan.training.defaults import default_config, v2_schedule_presets


def get_config():
    config = default_config()
    config.model.resolution = 1024
    config.dataset.name = "synthetic1024"
    config.dataset.source = "synthetic"
    config.dataset.num_examples = 1024
    config.schedule.max_minibatch_per_device = {256: 16, 512: 8, 1024: 4}
    config.schedule.by_device_count = v2_schedule_presets()
    return config
