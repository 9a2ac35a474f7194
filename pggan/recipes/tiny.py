"""A tiny recipe for tests: 16x16 synthetic images, very narrow networks, a few hundred images per phase.

pggan-train --config=tiny --workdir=/tmp/pggan_tiny
"""

from pggan.training.defaults import default_config


def get_config():
    config = default_config()
    config.model.resolution = 16
    config.model.latent_size = 8
    config.model.fmap_base = 32
    config.model.fmap_max = 8

    config.dataset.name = "synthetic16"
    config.dataset.source = "synthetic"
    config.dataset.num_examples = 64

    schedule = config.schedule
    schedule.stabilize_kimg = 0.128
    schedule.transition_kimg = 0.128
    schedule.total_kimg = 0.768
    schedule.minibatch_base = 16
    schedule.minibatch_repeats = 2
    schedule.tick_kimg_base = 0.128
    schedule.tick_kimg = {}

    config.checkpoint.every_ticks = 2
    config.checkpoint.async_save = False
    config.samples.grid = "2x4"
    config.samples.every_ticks = 3
    config.samples.batch_size = 8
    config.metrics.names = ()  # tests that want training-time metrics turn them on
    return config
