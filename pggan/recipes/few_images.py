"""A folder of 100 to 1,000 images: adaptive differentiable augmentation (ADA-style) against D's overfitting.

    pggan-train --config=few_images --workdir=runs/mine \
        --config.dataset.source=folder:/path/to/images --config.dataset.name=mine

With so few images D soon memorises the reals, and G's images degrade. Every image D sees (reals,
fakes, the R1 penalty's reals) is augmented (`pggan/data/diff_augment.py`) with each transform's
probability p adapted as ADA does: p rises while E[sign(D(real))] > 0.6 and falls below it; the
probability is logged as train/augment_p, the heuristic as train/augment_rt. The loss is ADA's:
non-saturating logistic with R1. DiffAugment instead (fixed p = 1, no flips or rotations):
    --config.augment.policy=diffaugment --config.augment.target=0 --config.augment.probability=1
The networks are narrow enough for a CPU; widen model.fmap_base / fmap_max on an accelerator.
"""

from pggan.training.defaults import default_config


def get_config():
    config = default_config()
    config.model.resolution = 64
    config.model.latent_size = 128
    config.model.fmap_base = 256
    config.model.fmap_max = 128

    config.dataset.name = ""  # set: the prepared dataset's name
    config.dataset.source = ""  # set: folder:<path of the images>
    config.dataset.mirror_augment = True

    config.loss.update(name="logistic", gp_lambda=0.0, drift=0.0, r1_gamma=1.0)

    # ADA's pipeline (flips, 90-degree rotations, colour, integer translation), p from 0, adapted every
    # 4 D steps towards r_t = 0.6; p may rise from 0 to 1 within 100 thousand images (ADA: 500 in far
    # longer runs).
    config.augment.update(policy="ada", probability=0.0, target=0.6, speed_kimg=100.0, interval=4)

    schedule = config.schedule
    schedule.total_kimg = 600
    schedule.fit_phases_to_total = True
    schedule.minibatch_base = 16
    schedule.g_lr_base = 0.002
    schedule.d_lr_base = 0.002
    schedule.tick_kimg_base = 10
    schedule.tick_kimg = {}

    config.ema.half_life_kimg = 2.0
    config.ema.rampup = 0.05

    config.checkpoint.every_ticks = 5
    config.samples.grid = "6x8"
    config.samples.every_ticks = 2
    config.metrics.names = ("swd",)
    config.metrics.num_images = 512  # clipped to the dataset size
    return config
