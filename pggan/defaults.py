"""The default training config: the official PGGAN v2 settings (config.py / train.py of the official code).

Recipes in `configs/` start from `default_config()` and override what they need. Every field can be
overridden on the command line: `--config.schedule.total_kimg=100`.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from pggan import losses, networks, normalization

# Official tick lengths (kimg) per resolution.
TICK_KIMG = {4: 160, 8: 140, 16: 120, 32: 100, 64: 80, 128: 60, 256: 40, 512: 20, 1024: 10}

# Official v2 presets (config.py): {devices: (minibatch_base, minibatch table, learning-rate table)}.
V2_PRESETS = {
    1: (4, {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}, {1024: 0.0015}),
    2: (8, {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8}, {512: 0.0015, 1024: 0.002}),
    4: (16, {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16}, {256: 0.0015, 512: 0.002, 1024: 0.003}),
    8: (32, {4: 512, 8: 256, 16: 128, 32: 64, 64: 32}, {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003}),
}


def v2_schedule_presets() -> dict:
    """`schedule.by_device_count` entries reproducing the official v2 1/2/4/8-GPU presets."""
    return {devices: {"minibatch_base": base, "minibatch": dict(table), "g_lr": dict(lrs), "d_lr": dict(lrs)}
            for devices, (base, table, lrs) in V2_PRESETS.items()}


def dataset_defaults() -> ml_collections.ConfigDict:
    """The `dataset` section (the quickstart digits, auto-prepared on first use).

    name: prepared dataset name inside data_dir.
    data_dir: '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
    source: what to prepare the dataset from when it is missing ('' = never prepare automatically):
      'digits', 'synthetic', 'folder:<path>', 'tfds:<name>' (see tools/prepare_dataset.py).
    num_examples: how many images a 'synthetic' source generates.
    prepare_workers: processes used by that automatic preparation (0: automatic).
    mirror_augment: random left-right flips of real images (per sample, on the device).
    on_device: 'auto' holds a level on the devices when it fits in on_device_memory_fraction of the
      device memory, 'always', or 'never' (host pipeline).
    num_threads, prefetch_batches, device_prefetch: host pipeline reader threads, read-ahead batches,
      batches whose transfer to the devices is started ahead.
    """
    config = ml_collections.ConfigDict()
    config.name = "digits"
    config.data_dir = ""
    config.source = "digits"
    config.num_examples = 1000
    config.prepare_workers = 0
    config.mirror_augment = False
    config.on_device = "auto"
    config.on_device_memory_fraction = 0.5
    config.num_threads = 2
    config.prefetch_batches = 4
    config.device_prefetch = 2
    return config


def metrics_defaults() -> ml_collections.ConfigDict:
    """The `metrics` section: the EMA generator evaluated during training (see pggan/training_metrics.py).

    names: metrics among swd, ms_ssim, fid, kid, is, pr_inception, pr_vgg16 (on the command line:
      --config.metrics.names=swd,fid; empty = none). fid, kid, is and pr_inception need the Inception weights
      (inception_weights or $PGGAN_INCEPTION_WEIGHTS), pr_vgg16 the VGG16 weights ($PGGAN_VGG16_WEIGHTS);
      without them they are skipped with a warning. The Inception metrics use the tf1 protocol (StyleGAN's).
    num_images: real and fake images per evaluation (clipped to the dataset size). SWD keeps 75 KB per image
      and pyramid level in host memory for each set (4096 images at 1024 px: 2.1 GB per set).
    batch_size: images per generator and metric step over this process's devices.
    at_stage_end: evaluate the last state of every resolution stage (and the end of training).
    every_kimg: also evaluate every this many thousand images (0 = off).
    seed: chooses the real subset and the fake latents (kept apart from the training seed so that runs
      compare on the same images).
    inception_weights: path of pt_inception-2015-12-05-6726825d.pth ('' = $PGGAN_INCEPTION_WEIGHTS).
    """
    config = ml_collections.ConfigDict()
    config.names = ("swd",)
    config.num_images = 4096
    config.batch_size = 64
    config.at_stage_end = True
    config.every_kimg = 0.0
    config.seed = 0
    config.inception_weights = ""
    return config


def default_config() -> ml_collections.ConfigDict:
    """Official defaults. Sections: model, dataset, schedule, loss, d_normalization, optimizer, ema, checkpoint,
    samples, metrics."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.model = dataclasses.asdict(networks.ModelSpec())
    config.dataset = dataset_defaults()

    config.schedule = ml_collections.ConfigDict()
    config.schedule.initial_resolution = 4
    config.schedule.stabilize_kimg = 600.0  # lod_training_kimg
    config.schedule.transition_kimg = 600.0  # lod_transition_kimg
    config.schedule.total_kimg = 12000.0
    config.schedule.minibatch_base = 16
    config.schedule.minibatch = {}
    config.schedule.max_minibatch_per_device = {}
    # {resolution: images}: run each device's minibatch as microbatches of at most this many images
    # and accumulate the gradients (less activation memory, same results; pggan/microbatching.py).
    config.schedule.max_microbatch_per_device = {}
    config.schedule.g_lr_base = 0.001
    config.schedule.g_lr = {}
    config.schedule.d_lr_base = 0.001
    config.schedule.d_lr = {}
    config.schedule.tick_kimg_base = 160.0
    config.schedule.tick_kimg = dict(TICK_KIMG)
    config.schedule.minibatch_repeats = 4
    config.schedule.d_repeats = 1  # D steps per minibatch repeat (TTUR update counts, with g_repeats)
    config.schedule.g_repeats = 1  # G steps per minibatch repeat
    # Optional per-device-count overrides of the fields above: {1: {...}, 8: {...}}; the entry with the
    # largest count <= the number of devices applies.
    config.schedule.by_device_count = {}

    # Adversarial loss and penalties (`pggan.losses.LossConfig`): name 'wgan' | 'logistic' | 'lsgan' |
    # 'hinge'; gp_lambda, gp_target (one-centred penalty on interpolates), gp0_lambda (zero-centred),
    # r1_gamma, r2_gamma, reg_interval (lazy penalties), drift, cond_weight (AC-GAN).
    config.loss = dataclasses.asdict(losses.LossConfig())
    # D's Lipschitz normalization (`pggan.normalization.NormalizationConfig`): method 'none' | 'spectral'
    # | 'gran'; power_iterations (spectral); gran_k, gran_epsilon (GraN; with the wgan loss and no penalty
    # it needs loss.drift = landscape.WGAN_GRAN_DRIFT, the trainer warns otherwise).
    config.d_normalization = dataclasses.asdict(normalization.NormalizationConfig())

    # Adam per network (TTUR: separate betas here, learning rates in schedule.g_lr / d_lr, update
    # counts in schedule.d_repeats / g_repeats). Official: 0, 0.99, 1e-8 for both.
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.g_beta1 = 0.0
    config.optimizer.g_beta2 = 0.99
    config.optimizer.d_beta1 = 0.0
    config.optimizer.d_beta2 = 0.99
    config.optimizer.eps = 1e-8

    # Generator EMA (official G_smoothing): decay `beta` per D step. With half_life_kimg > 0 the decay
    # instead follows the minibatch so that the average halves every half_life_kimg thousand images
    # (beta = 0.5 ** (minibatch / (1000 * half_life_kimg))), optionally ramped up as
    # min(half_life, rampup * images shown) for short runs.
    config.ema = ml_collections.ConfigDict()
    config.ema.beta = 0.999
    config.ema.half_life_kimg = 0.0
    config.ema.rampup = 0.0
    # Compiled training rounds are kept here between runs (pggan/compilation_cache.py); '' = off.
    config.compilation_cache_dir = "~/.cache/pggan/jax"
    config.max_consecutive_nonfinite = 100  # stop after this many skipped steps in a row (0 = never)

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_ticks = 10  # network_snapshot_ticks
    config.checkpoint.keep = 3  # newest checkpoints kept (plus the last of every resolution stage)
    config.checkpoint.async_save = True

    config.samples = ml_collections.ConfigDict()
    config.samples.every_ticks = 1  # image_snapshot_ticks
    config.samples.grid = ""  # 'ROWSxCOLS'; '' = the official 1080p grid for the final resolution
    config.samples.batch_size = 64

    config.metrics = metrics_defaults()
    return config
