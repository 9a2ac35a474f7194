"""The budget of the loss comparison: the quickstart digits and networks, 4x4 -> 16x16 in 8 kimg.

    python tools/compare_losses.py --outdir=runs/loss_comparison --num_images=256

Every compared combination of `pggan.training.landscape` trains with these settings (the tool sets the loss,
penalties and D normalization); results in docs/loss_comparison.md. 1.5 kimg per stabilization and
per fade, then 2 kimg at 16x16: 8 kimg per run. The quickstart's networks and EMA are unchanged; the
learning rate stays at 0.002 (the quickstart's before it moved to 0.006), the rate the comparison ran with.
"""

from pggan.recipes import quickstart


def get_config():
    config = quickstart.get_config()
    config.model.resolution = 16
    schedule = config.schedule
    schedule.stabilize_kimg = 1.5
    schedule.transition_kimg = 1.5
    schedule.total_kimg = 8
    schedule.g_lr_base = schedule.d_lr_base = 0.002
    schedule.tick_kimg_base = 2
    config.checkpoint.every_ticks = 100  # only the stage-final checkpoints
    config.samples.grid = "4x8"
    config.samples.every_ticks = 100  # a grid at the end of training
    return config
