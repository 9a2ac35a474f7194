"""Measures how close projection gets: projects every image of folders of targets and compares.

  python tools/projection_quality.py --workdir=runs/digits_heldout --targets=train:train_pngs,heldback:held_pngs

For each folder (up to --num images, sorted by name), all images are projected in one batch
(pggan/projection.py, settings as pggan-project's flags) and the projections are compared with their
targets: mean PSNR (dB) and MS-SSIM per pair, and SWD (x1e3, pggan's metric) between the two sets. For
scale, the same figures for images of random latents (seeds 0, 1, ...) in place of the projections.
Prints two Markdown table rows per folder, for docs/projection.md.
"""

from __future__ import annotations

import os
import time

import numpy as np
from absl import flags

from pggan import network_sources, projection
from pggan.cli import checkpoint_flags
from pggan.cli.runner import UsageError, program_main, run_program
from pggan.data import imaging
from pggan.metrics import ms_ssim, swd
from pggan.trained_generator import TrainedGenerator

_TARGETS = flags.DEFINE_list("targets", [], "NAME:FOLDER pairs: the folders of target images to measure.")
_NUM = flags.DEFINE_integer("num", 100, "Images per folder (the first, by file name).", lower_bound=2)
_NUM_STEPS = flags.DEFINE_integer("num_steps", projection.ProjectionConfig.num_steps, "Optimisation steps.")
_RESTARTS = flags.DEFINE_integer("restarts", projection.ProjectionConfig.restarts, "Restarts per target.")
_D_WEIGHT = flags.DEFINE_float("d_weight", projection.ProjectionConfig.d_weight, "Weight of the D features.")
_MS_SSIM_WEIGHT = flags.DEFINE_float(
    "ms_ssim_weight", projection.ProjectionConfig.ms_ssim_weight, "Weight of 1 - MS-SSIM."
)
_PIXEL_WEIGHT = flags.DEFINE_float("pixel_weight", projection.ProjectionConfig.pixel_weight, "Weight of pixels.")

_CHECKPOINT_FLAGS = checkpoint_flags.take(__name__, "workdir", "step", "resolution", "seed")


def _folder_images(folder: str, resolution: int, channels: int) -> np.ndarray:
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".png", ".jpg", ".jpeg")))[: _NUM.value]
    if len(names) < 2:
        raise UsageError(f"{folder} holds fewer than 2 images")
    return np.stack(
        [imaging.square_and_resize(imaging.load_image(os.path.join(folder, n), channels), resolution) for n in names]
    )


def run() -> None:
    checkpoint_flags.refuse_others("tools/projection_quality.py", _CHECKPOINT_FLAGS)
    config = projection.ProjectionConfig(
        num_steps=_NUM_STEPS.value,
        restarts=_RESTARTS.value,
        d_weight=_D_WEIGHT.value,
        ms_ssim_weight=_MS_SSIM_WEIGHT.value,
        pixel_weight=_PIXEL_WEIGHT.value,
        seed=checkpoint_flags.SEED.value,
    )
    choice = checkpoint_flags.checkpoint_choice()
    loaded = network_sources.load(
        choice["workdir"], ("generator_ema", "discriminator"), step=choice["step"], resolution=choice["resolution"]
    )
    generator = TrainedGenerator(loaded.generator(), resolution=loaded.resolution, alpha=loaded.alpha, meta=loaded.meta)
    print("| targets | images | compared with | PSNR (dB) | MS-SSIM | SWD x1e3 (avg) |")
    print("|---|---|---|---|---|---|")
    for entry in _TARGETS.value:
        name, _, folder = entry.partition(":")
        if not folder:
            raise UsageError(f"--targets entries are NAME:FOLDER, got {entry!r}")
        targets = _folder_images(folder, loaded.resolution, loaded.spec.num_channels)
        start = time.time()
        result = projection.project(
            generator.module,
            targets,
            resolution=loaded.resolution,
            alpha=loaded.alpha,
            discriminator=loaded.discriminator(),
            config=config,
        )
        seconds = time.time() - start
        candidates = {
            f"projections ({seconds:.0f} s)": generator.generate_from_latents(result.latents),
            "random latents": generator.generate(range(len(targets))),
        }
        for what, images in candidates.items():
            print(
                f"| {name} | {len(targets)} | {what} | {np.mean(projection.psnr(targets, images)):.2f} | "
                f"{np.mean(np.asarray(ms_ssim.ms_ssim(targets, images))):.3f} | {_swd(targets, images):.1f} |",
                flush=True,
            )


def _swd(a: np.ndarray, b: np.ndarray) -> float:
    """SWD x1e3 averaged over the pyramid levels between two equally large uint8 image sets."""
    rng = np.random.default_rng(0)
    sets = []
    for images in (a, b):
        descriptors = swd.SWDDescriptors(a.shape[1], rng)
        descriptors.add(images)
        sets.append(descriptors.finalize())
    return swd.swd_scores(*sets, rng)["swd_avg"]


main = program_main(run)


if __name__ == "__main__":
    run_program(main, "__main__")
