"""CelebA-HQ 1024x1024: the official v2 recipe (12,000 kimg), with the official 1/2/4/8-GPU presets.

Prepare the data once (needs the CelebA-HQ manual download, see README), then train:

    pggan-prepare --source=tfds:celeb_a_hq/1024 --name=celebahq_1024 \
        --manual_dir=/path/to/celeb_a_hq_manual
    pggan-train --config=celebahq_1024 --workdir=runs/celebahq

The minibatch and learning-rate tables follow the device count (the preset of the largest count
<= the devices present), exactly as the official `config.py` presets; the per-device cap is the
official fp32 one.
"""

from pggan.training.defaults import default_config, v2_schedule_presets


def get_config():
    config = default_config()
    config.seed = 1000  # official random_seed
    config.model.resolution = 1024
    config.dataset.name = "celebahq_1024"
    config.dataset.source = ""  # prepared by tools/prepare_dataset.py
    config.dataset.mirror_augment = True
    config.schedule.total_kimg = 12000
    config.schedule.max_minibatch_per_device = {256: 16, 512: 8, 1024: 4}
    config.schedule.by_device_count = v2_schedule_presets()
    return config
