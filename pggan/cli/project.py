"""Projects a real image into a trained generator: finds the latent whose image is closest to it.

  pggan-project --workdir=runs/quickstart --target=photo.png --outdir=projected
  # with a video of the optimisation (target | projection), more steps and restarts
  pggan-project --workdir=runs/quickstart --target=photo.png --outdir=projected --video=progress.mp4 \
      --num_steps=1000 --restarts=8

Writes into --outdir: target.png (the target, centre-cropped and resized to the generator's resolution),
projected.png (the generator's image of the latent) and latent.npy (float32 [1, latent_size]:
pggan.load_generator(...).generate_from_latents(np.load("latent.npy")) draws projected.png again).
The distance combines pixels, MS-SSIM and the run's discriminator features (pggan/projection.py);
--workdir may be a run, a checkpoint, a .pggan export (with --training_networks for the D term) or an
official .pkl.
"""

from __future__ import annotations

import os

import numpy as np
from absl import flags
from tqdm import tqdm

from pggan import network_sources, portable, projection
from pggan.cli import checkpoint_flags
from pggan.cli.runner import UsageError, program_main, run_program
from pggan.data import imaging
from pggan.metrics import ms_ssim
from pggan.sampling import latent_space, media
from pggan.trained_generator import TrainedGenerator

_DEFAULTS = projection.ProjectionConfig()
_TARGET = flags.DEFINE_string(
    "target", None, "The image to project (PNG, JPEG, ...); centre-cropped and resized to the generator's resolution."
)
_OUTDIR = flags.DEFINE_string("outdir", None, "Folder for target.png, projected.png and latent.npy (created).")
_VIDEO = flags.DEFINE_string(
    "video",
    "",
    "Also write the optimisation as a video (.mp4 or .gif): target | projection, one frame every --frame_every steps.",
)
_FRAME_EVERY = flags.DEFINE_integer("frame_every", 5, "Video: steps per frame.", lower_bound=1)
_FPS = flags.DEFINE_float("fps", 30.0, "Video: frames per second.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", _DEFAULTS.num_steps, "Optimisation steps.", lower_bound=1)
_RESTARTS = flags.DEFINE_integer(
    "restarts",
    _DEFAULTS.restarts,
    "Independent starting latents optimised together; the closest result wins.",
    lower_bound=1,
)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", _DEFAULTS.initial_learning_rate, "Peak Adam learning rate.")
_PIXEL_WEIGHT = flags.DEFINE_float(
    "pixel_weight", _DEFAULTS.pixel_weight, "Weight of the mean squared pixel difference."
)
_MS_SSIM_WEIGHT = flags.DEFINE_float(
    "ms_ssim_weight", _DEFAULTS.ms_ssim_weight, "Weight of 1 - MS-SSIM (0 for images smaller than 16x16)."
)
_D_WEIGHT = flags.DEFINE_float(
    "d_weight",
    _DEFAULTS.d_weight,
    "Weight of the discriminator-feature distance (0 when the source has no discriminator).",
)
_LABEL = flags.DEFINE_integer("label", None, "Conditional models: the class of the target.")

_CHECKPOINT_FLAGS = checkpoint_flags.take(__name__, "workdir", "step", "resolution", "seed")


def _target(resolution: int, channels: int) -> np.ndarray:
    if not _TARGET.value or not os.path.isfile(_TARGET.value):
        raise UsageError(f"--target must name an image file, got {_TARGET.value!r}")
    try:
        image = imaging.load_image(_TARGET.value, channels)
    except (OSError, ValueError) as e:
        raise UsageError(f"--target={_TARGET.value} is not a readable image ({e})") from None
    return imaging.square_and_resize(image, resolution)


def run() -> None:
    checkpoint_flags.refuse_others("pggan-project", _CHECKPOINT_FLAGS)
    if not _OUTDIR.value:
        raise UsageError("--outdir is required: the folder for target.png, projected.png and latent.npy")
    if _VIDEO.value and os.path.splitext(_VIDEO.value)[1].lower() not in media.VIDEO_EXTENSIONS:
        raise UsageError(f"--video={_VIDEO.value}: use one of {', '.join(media.VIDEO_EXTENSIONS)}")
    config = projection.ProjectionConfig(
        num_steps=_NUM_STEPS.value,
        restarts=_RESTARTS.value,
        initial_learning_rate=_LEARNING_RATE.value,
        pixel_weight=_PIXEL_WEIGHT.value,
        ms_ssim_weight=_MS_SSIM_WEIGHT.value,
        d_weight=_D_WEIGHT.value,
        seed=checkpoint_flags.SEED.value,
        frame_every=_FRAME_EVERY.value if _VIDEO.value else 0,
    )
    choice = checkpoint_flags.checkpoint_choice()
    items = ("generator_ema", "discriminator") if config.d_weight else ("generator_ema",)
    try:
        loaded = network_sources.load(choice["workdir"], items, step=choice["step"], resolution=choice["resolution"])
    except portable.MissingNetworksError as error:
        raise UsageError(f"{error}, or project without D's features: --d_weight=0") from None
    generator = TrainedGenerator(loaded.generator(), resolution=loaded.resolution, alpha=loaded.alpha, meta=loaded.meta)
    target = _target(loaded.resolution, loaded.spec.num_channels)
    labels = None if _LABEL.value is None else latent_space.one_hot_labels([_LABEL.value], loaded.spec.label_size)
    discriminator = loaded.discriminator() if config.d_weight else None
    with tqdm(total=config.num_steps, unit="step", desc="projecting") as bar:
        result = projection.project(
            generator.module,
            target[None],
            resolution=loaded.resolution,
            alpha=loaded.alpha,
            discriminator=discriminator,
            labels=labels,
            config=config,
            progress=lambda step, distances: bar.update(1),
        )
    os.makedirs(_OUTDIR.value, exist_ok=True)
    projected = generator.generate_from_latents(result.latents, labels=_LABEL.value)
    media.save_png(target, os.path.join(_OUTDIR.value, "target.png"))
    media.save_png(projected[0], os.path.join(_OUTDIR.value, "projected.png"))
    np.save(os.path.join(_OUTDIR.value, "latent.npy"), result.latents)
    similarity = float(ms_ssim.ms_ssim(target[None], projected)[0]) if loaded.resolution >= 16 else float("nan")
    print(
        f"Projected {_TARGET.value} in {config.num_steps} steps ({config.restarts} restarts): distance "
        f"{result.distances[0]:.4f}, PSNR {projection.psnr(target[None], projected)[0]:.2f} dB, MS-SSIM "
        f"{similarity:.4f}. Wrote target.png, projected.png and latent.npy to {_OUTDIR.value}."
    )
    if _VIDEO.value:
        frames = (np.concatenate([target, frame[0]], axis=1) for frame in result.frames)
        zoom = media.video_zoom(loaded.resolution, 2 * loaded.resolution)
        count = media.write_video(
            (media.fit_to_frame(f, f.shape[0] * zoom, f.shape[1] * zoom) for f in frames), _VIDEO.value, fps=_FPS.value
        )
        print(f"Wrote {_VIDEO.value}: {count} frames (target | projection).")


main = program_main(run)


def entry_point() -> None:
    """The console script `pggan-project`."""
    run_program(main, __name__)


if __name__ == "__main__":
    entry_point()
