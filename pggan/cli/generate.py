"""Samples a trained run: image grids, one image per seed, latent interpolation videos, progress videos.

Works from any run's --workdir with its latest checkpoint and the EMA generator unless told otherwise
(--step, --resolution, --network=raw), on the CPU, one GPU or all local devices. The same seed gives
the same images on every run and every device count. Exactly one output mode per call:

  # a sample grid (PNG)
  pggan-generate --workdir=runs/quickstart --grid=8x8 --seed=0 --out=grid.png
  # one PNG per seed: seed000001.png, seed000005.png, seed000007.png ... seed000010.png
  pggan-generate --workdir=runs/quickstart --seeds=1,5,7-10 --outdir=images
  # or the 100 seeds 0 ... 99
  pggan-generate --workdir=runs/quickstart --num=100 --seed=0 --outdir=images
  # a smooth random walk in latent space, a 2x3 grid of independent walks (MP4 or GIF)
  pggan-generate --workdir=runs/quickstart --video=walk.mp4 --duration=20 --video_grid=2x3
  # spherical interpolation through the images of seeds 1, 2, 3 (and back to 1)
  pggan-generate --workdir=runs/quickstart --video=keys.gif --keyframes=1,2,3 --duration=6
  # training progress from the run's sample grids, or from its stage checkpoints
  pggan-generate --workdir=runs/quickstart --progress_video=progress.mp4
  pggan-generate --workdir=runs/quickstart --progress_video=stages.mp4 --progress_from=checkpoints

Conditional models: --label=K gives every image class K; without it the classes cycle over the
grid cells (as in the training snapshots), and the image of seed s has class s mod label_size.
"""

from __future__ import annotations

import os

from absl import flags

from pggan.cli import checkpoint_flags
from pggan.cli.runner import UsageError, program_main, run_program
from pggan.sampling import generation, latent_space, media

_GRID = flags.DEFINE_string("grid", "", "Grid mode: write a ROWSxCOLS sample grid (e.g. 8x8) to --out.")
_OUT = flags.DEFINE_string("out", "", "Grid mode: the PNG file to write.")
_NUM = flags.DEFINE_integer(
    "num",
    0,
    "Images mode: write this many images, seeds --seed ... --seed+num-1, one PNG per seed into --outdir.",
    lower_bound=0,
)
_SEEDS = flags.DEFINE_string(
    "seeds",
    "",
    "Images mode: write the image of each of these seeds, e.g. 1,5,7-10 "
    "(ranges inclusive), one PNG per seed into --outdir.",
)
_OUTDIR = flags.DEFINE_string("outdir", "", "Images mode: the folder for the PNGs (created if missing).")
_VIDEO = flags.DEFINE_string(
    "video",
    "",
    "Video mode: write a latent interpolation video to this .mp4 (H.264) "
    "or .gif file: a smooth random walk, or --keyframes.",
)
_KEYFRAMES = flags.DEFINE_list(
    "keyframes",
    [],
    "Video mode: seeds to interpolate between (spherically), e.g. "
    "1,2,3; keyframe k is the --grid image of that seed. Default: a random walk.",
)
_LOOP = flags.DEFINE_bool("loop", True, "Video mode with --keyframes: return to the first keyframe at the end.")
_SMOOTHING_SEC = flags.DEFINE_float(
    "smoothing_sec",
    1.0,
    "Video mode, random walk: standard deviation in "
    "seconds of the Gaussian filter along time (larger = slower changes).",
)
_VIDEO_GRID = flags.DEFINE_string(
    "video_grid",
    "1x1",
    "Videos: ROWSxCOLS independent walks in one video; for "
    "--progress_from=checkpoints, the grid each checkpoint renders.",
)
_DURATION = flags.DEFINE_float(
    "duration", 10.0, "Videos: length in seconds (a progress video spreads its grids over it, at least one frame each)."
)
_FPS = flags.DEFINE_float("fps", 30.0, "Videos: frames per second.")
_CRF = flags.DEFINE_integer(
    "crf",
    18,
    "MP4 videos: H.264 quality, 0 (lossless) ... 51 (worst); 18 looks lossless.",
    lower_bound=0,
    upper_bound=51,
)
_PROGRESS_VIDEO = flags.DEFINE_string(
    "progress_video", "", "Progress mode: write a training-progress video (.mp4 or .gif) of the run."
)
_PROGRESS_FROM = flags.DEFINE_enum(
    "progress_from",
    "samples",
    ["samples", "checkpoints"],
    "Progress mode: "
    "'samples' shows the grids the trainer wrote (WORKDIR/samples/fakes_*.png); "
    "'checkpoints' renders the same latents with the last checkpoint of every "
    "resolution stage and the latest one.",
)
_TRUNCATION = flags.DEFINE_float(
    "truncation",
    1.0,
    "Truncation psi in [0, 1]: pulls latents toward the mean (1 = none, 0 = the same image for every latent).",
)
_LABEL = flags.DEFINE_integer(
    "label",
    None,
    "Conditional models: class of every image, in [0, label_size). Default: classes cycle over the images.",
)
_ZOOM = flags.DEFINE_integer(
    "zoom",
    0,
    "Integer upscaling (nearest neighbour) of the output. 0 = none for "
    f"PNGs; for videos, enough for frames at least {media.MIN_VIDEO_SIDE} pixels high "
    "and wide.",
    lower_bound=0,
)

checkpoint_flags.take(__name__, *checkpoint_flags.NAMES)

# The output flag of each mode, and the modes each optional flag applies to.
MODE_FLAGS = {"grid": _GRID, "images": _NUM, "video": _VIDEO, "progress": _PROGRESS_VIDEO}
# --seeds is the other way to ask for the images mode.
MODE_OF_FLAG = {**{flag.name: mode for mode, flag in MODE_FLAGS.items()}, "seeds": "images"}
FLAG_MODES = {
    "out": {"grid"},
    "outdir": {"images"},
    "keyframes": {"video"},
    "loop": {"video"},
    "smoothing_sec": {"video"},
    "video_grid": {"video", "progress"},
    "duration": {"video", "progress"},
    "fps": {"video", "progress"},
    "crf": {"video", "progress"},
    "progress_from": {"progress"},
    "step": {"grid", "images", "video"},
    "resolution": {"grid", "images", "video"},
}
# Flags of sampling a checkpoint, which a progress video from the trainer's sample grids does not do.
SAMPLING_FLAGS = ("seed", "truncation", "label", "batch_size", "network", "video_grid")


def _chosen_mode() -> str:
    """The one output mode asked for; UsageError for none, several, or flags of another mode."""
    given = [name for name in MODE_OF_FLAG if flags.FLAGS[name].value]
    if len(given) != 1:
        shown = ", ".join(f"--{name}" for name in given) or "none"
        through_seeds = set(given) == {"video", "seeds"}
        keyframes = " (a video through chosen seeds: --video with --keyframes)" if through_seeds else ""
        raise UsageError(
            f"choose exactly one output: --grid, --num, --seeds, --video or --progress_video (got {shown}){keyframes}"
        )
    mode = MODE_OF_FLAG[given[0]]
    for name, modes_of_flag in FLAG_MODES.items():
        if flags.FLAGS[name].present and mode not in modes_of_flag:
            raise UsageError(f"--{name} does not apply to --{given[0]}; drop it")
    if mode == "progress" and _PROGRESS_FROM.value == "samples":
        for name in SAMPLING_FLAGS:
            if flags.FLAGS[name].present:
                raise UsageError(
                    f"--{name} does not apply to a progress video from sample grids; drop it "
                    "or add --progress_from=checkpoints"
                )
    if mode == "video" and _KEYFRAMES.value and flags.FLAGS["smoothing_sec"].present:
        raise UsageError("--smoothing_sec is for random walks and --keyframes makes a keyframe video: drop one")
    return mode


def _output_path(flag: flags.FlagHolder, extensions: tuple[str, ...]) -> str:
    path = flag.value
    if not path:
        raise UsageError(f"--{flag.name} is required: the file or folder to write")
    if extensions and os.path.splitext(path)[1].lower() not in extensions:
        raise UsageError(f"--{flag.name}={path} has an unknown extension: use one of {', '.join(extensions)}")
    return path


def _num_frames() -> int:
    if not (_DURATION.value > 0 and _FPS.value > 0):
        raise UsageError(f"--duration and --fps must be positive, got {_DURATION.value} and {_FPS.value}")
    return max(1, round(_DURATION.value * _FPS.value))


def _keyframe_seeds() -> list[int]:
    if not all(seed.strip().isdigit() for seed in _KEYFRAMES.value):
        raise UsageError(f"--keyframes must be non-negative integer seeds, e.g. 1,2,3; got {_KEYFRAMES.value}")
    return [int(seed) for seed in _KEYFRAMES.value]


def _load_sampler() -> tuple[generation.Sampler, dict]:
    sampler, meta = generation.Sampler.from_checkpoint(
        **checkpoint_flags.checkpoint_choice(),
        psi=_TRUNCATION.value,
        label=_LABEL.value,
        batch_size=checkpoint_flags.BATCH_SIZE.value,
    )
    final = sampler.spec.resolution
    below = (
        f" That is below the model's {final}x{final}: the checkpoint is from an earlier stage (the run ended "
        "there, or --step/--resolution chose it)."
        if meta["resolution"] < final
        else ""
    )
    print(
        f"Sampling {meta['resolution']}x{meta['resolution']} images (alpha {meta['alpha']:.2f}) with the "
        f"{checkpoint_flags.NETWORK.value} generator of the checkpoint at {meta['step'] / 1000:.1f} kimg.{below}"
    )
    return sampler, meta


def _write_grid() -> None:
    rows, cols = latent_space.parse_grid_spec(_GRID.value)
    out = _output_path(_OUT, (".png",))
    sampler, _ = _load_sampler()
    media.save_png(
        generation.sample_grid(sampler, checkpoint_flags.SEED.value, rows, cols, zoom=_ZOOM.value or 1, progress=True),
        out,
    )
    print(f"Wrote the {rows}x{cols} grid of seed {checkpoint_flags.SEED.value} to {out}.")


def _write_images() -> None:
    outdir = _output_path(_OUTDIR, ())
    if _SEEDS.value and flags.FLAGS["seed"].present:
        raise UsageError("--seed with --seeds: --seeds lists every seed; drop --seed")
    seeds = (
        latent_space.parse_seeds(_SEEDS.value)
        if _SEEDS.value
        else range(checkpoint_flags.SEED.value, checkpoint_flags.SEED.value + _NUM.value)
    )
    sampler, _ = _load_sampler()
    paths = generation.save_seed_images(sampler, seeds, outdir, zoom=_ZOOM.value or 1, progress=True)
    print(f"Wrote {len(paths)} images to {outdir} ({os.path.basename(paths[0])} ...).")


def _write_video() -> None:
    out = _output_path(_VIDEO, media.VIDEO_EXTENSIONS)
    rows, cols = latent_space.parse_grid_spec(_VIDEO_GRID.value)
    num_frames = _num_frames()
    seeds = _keyframe_seeds() if _KEYFRAMES.value else None
    sampler, _ = _load_sampler()
    if seeds:
        latents = latent_space.keyframe_walk(
            seeds, num_frames, sampler.spec.latent_size, num_walks=rows * cols, loop=_LOOP.value
        )
    else:
        latents = latent_space.smooth_random_walk(
            num_frames,
            sampler.spec.latent_size,
            fps=_FPS.value,
            smoothing_sec=_SMOOTHING_SEC.value,
            seed=checkpoint_flags.SEED.value,
            num_walks=rows * cols,
        )
    frames = generation.video_frames(sampler, latents, rows, cols, zoom=_ZOOM.value, progress=True)
    count = media.write_video(frames, out, fps=_FPS.value, crf=_CRF.value)
    kind = f"keyframes {','.join(map(str, seeds))}" if seeds else f"random walk of seed {checkpoint_flags.SEED.value}"
    print(f"Wrote {out}: {count} frames at {_FPS.value:g} fps, {rows}x{cols} {kind}.")


def _write_progress_video() -> None:
    out = _output_path(_PROGRESS_VIDEO, media.VIDEO_EXTENSIONS)
    num_frames = _num_frames()
    workdir = checkpoint_flags.workdir()
    if _PROGRESS_FROM.value == "samples":
        paths = [path for _, path in media.list_sample_grids(os.path.join(workdir, "samples"))]
        height, width = media.progress_frame_size(paths)
        zoom = media.video_zoom(height, width, _ZOOM.value)
        frames = media.progress_frames(paths, height * zoom, width * zoom, max(1, round(num_frames / len(paths))))
        what = f"{len(paths)} sample grids"
    else:
        rows, cols = latent_space.parse_grid_spec(_VIDEO_GRID.value)
        steps = generation.progress_checkpoint_steps(workdir, checkpoint_flags.NETWORK.value)
        frames = generation.stage_progress_frames(
            workdir,
            steps,
            seed=checkpoint_flags.SEED.value,
            rows=rows,
            cols=cols,
            network=checkpoint_flags.NETWORK.value,
            frames_per_step=max(1, round(num_frames / len(steps))),
            zoom=_ZOOM.value,
            progress=True,
            psi=_TRUNCATION.value,
            label=_LABEL.value,
            batch_size=checkpoint_flags.BATCH_SIZE.value,
        )
        what = f"{len(steps)} checkpoints"
    count = media.write_video(frames, out, fps=_FPS.value, crf=_CRF.value)
    print(f"Wrote {out}: {count} frames at {_FPS.value:g} fps from {what}.")


WRITERS = {"grid": _write_grid, "images": _write_images, "video": _write_video, "progress": _write_progress_video}


def run() -> None:
    WRITERS[_chosen_mode()]()


main = program_main(run)


def entry_point() -> None:
    """The console script `pggan-generate`."""
    run_program(main, __name__)


if __name__ == "__main__":
    entry_point()
