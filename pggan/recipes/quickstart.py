"""Quickstart: handwritten digits (shipped with pggan, no download), 4x4 -> 32x32 on a laptop CPU.

    pggan-train --config=quickstart --workdir=runs/quickstart

The 1,797 8x8 digits are upscaled to 32x32 RGB and prepared automatically on first use. Narrow
networks and short phases train the four stages 4, 8, 16, 32 in 140 kimg, 2.5 to 5 minutes on 2 CPU
cores, compiles included (2 min 32 s and 5 min 5 s measured on the same 2-core machine on two days;
BENCHMARKS.md), and give recognisable digits. Everything else (WGAN-GP, fade-in, minibatch stddev,
Adam betas 0 / 0.99, Adam resets) is the official recipe. Where it differs from the paper, and why
(final SWD, screened on seed 0, the finalists on three seeds: BENCHMARKS.md "The quick start's recipe"):

- learning rate 0.006 for both networks (paper 0.001): a run this short gains most from larger steps
  (final SWD x1e3 27.0 at 0.002 over three seeds, 18.7 at 0.006 over eight, none of which failed); 0.008
  destabilised one seed of two at 32x32, 0.012 collapsed;
- EMA half-life 1 kimg with a ramp-up (paper: 0.999 per step, about 11 kimg at minibatch 16): the grids
  show the current generator; 10 kimg and 0.5 kimg both scored worse;
- minibatch 16 (32 was worse; 8 was better per image but 10 % slower), phases of 20 kimg (10 kimg
  phases with more time at 32x32 were worse), widths fmap_base 128 (256 was better at twice the time);
- no mirror augmentation: digits are not left-right symmetric.
"""

from pggan.training.defaults import default_config


def get_config():
    config = default_config()
    config.model.resolution = 32
    config.model.latent_size = 64
    config.model.fmap_base = 128
    config.model.fmap_max = 64

    config.dataset.name = "digits"
    config.dataset.source = "digits"

    schedule = config.schedule
    schedule.stabilize_kimg = 20
    schedule.transition_kimg = 20
    schedule.total_kimg = 140
    schedule.minibatch_base = 16
    schedule.g_lr_base = 0.006
    schedule.d_lr_base = 0.006
    schedule.tick_kimg_base = 10
    schedule.tick_kimg = {}

    # A run this short needs a faster generator average than the official 0.999 per step: the EMA
    # halves every 1,000 images (ramped up over the first images) so the grids show the current G.
    config.ema.half_life_kimg = 1.0
    config.ema.rampup = 0.05

    config.checkpoint.every_ticks = 5
    config.samples.grid = "8x16"
    config.samples.every_ticks = 2

    # SWD of 512 images at the end of each of the four stages: under a minute in all on 2 CPU cores
    # (pggan-evaluate --workdir=... --all evaluates the checkpoints with more images).
    config.metrics.names = ("swd",)
    config.metrics.num_images = 512
    return config
