"""LSUN 256x256 (e.g. bedroom): the official v2 recipe at 256 px, mirror augmentation on.

pggan-prepare --source=tfds:lsun/bedroom --resolution=256 --name=lsun_bedroom_256
pggan-train --config=lsun_256 --workdir=runs/lsun_bedroom
# another category: --config.dataset.name=lsun_church_256
"""

from pggan.training.defaults import default_config, v2_schedule_presets


def get_config():
    config = default_config()
    config.seed = 1000
    config.model.resolution = 256
    config.dataset.name = "lsun_bedroom_256"
    config.dataset.source = ""
    config.dataset.mirror_augment = True
    config.schedule.total_kimg = 12000
    config.schedule.max_minibatch_per_device = {256: 16}
    config.schedule.by_device_count = v2_schedule_presets()
    return config
