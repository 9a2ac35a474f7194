"""CIFAR-10 32x32, unconditional (the paper's inception-score experiment setting at 32 px).

    pggan-prepare --source=tfds:cifar10 --name=cifar10
    pggan-train --config=cifar10_32 --workdir=runs/cifar10

Class-conditional variant: --config.model.label_size=10 (labels come from the dataset).
"""

from pggan.training.defaults import default_config


def get_config():
    config = default_config()
    config.seed = 1000
    config.model.resolution = 32
    config.dataset.name = "cifar10"
    config.dataset.source = ""
    config.schedule.total_kimg = 12000
    config.schedule.minibatch_base = 64
    config.schedule.minibatch = {4: 128, 8: 128, 16: 128, 32: 64}
    return config
