"""Converts a network pickle of the official PGGAN code into a pggan checkpoint.

  pggan-import --pkl=karras2018iclr-celebahq-1024x1024.pkl --workdir=runs/celebahq

The pickle (the networks NVIDIA released with the paper, or a network-snapshot-*.pkl of the official
train.py) is read without TensorFlow and without executing anything from the file. The workdir then
works with pggan-generate and pggan-evaluate like any training run (EMA generator = official Gs).
"""

from __future__ import annotations

from absl import flags
from tqdm import tqdm

from pggan.cli import checkpoint_flags
from pggan.cli.runner import program_main, run_program
from pggan.official import importer

_PKL = flags.DEFINE_string(
    "pkl", None, "Official network pickle: karras2018iclr-*.pkl or network-snapshot-*.pkl holding (G, D, Gs)."
)
_KIMG = flags.DEFINE_float(
    "kimg",
    None,
    "Training progress to record in the checkpoint, in thousands of images "
    "(default: from a network-snapshot-<kimg>.pkl file name, else 0).",
)
flags.mark_flags_as_required(["pkl"])
_CHECKPOINT_FLAGS = checkpoint_flags.take(__name__, "workdir")


def run() -> None:
    checkpoint_flags.refuse_others("pggan-import", _CHECKPOINT_FLAGS)
    workdir = checkpoint_flags.workdir()  # a new pggan run directory (it must hold no checkpoints)
    with tqdm(total=2, unit="stage", leave=False) as bar:
        started: list[str] = []

        def progress(stage: str) -> None:
            if started:
                bar.update(1)
            started.append(stage)
            bar.set_description(stage)

        summary = importer.import_snapshot(_PKL.value, workdir, kimg=_KIMG.value, progress=progress)
        bar.update(1)
    spec = summary.spec
    labels = f"{spec.label_size} classes" if spec.label_size else "unconditional"
    print(
        f"Imported {_PKL.value}: {spec.resolution}x{spec.resolution}x{spec.num_channels}, latent {spec.latent_size}, "
        f"{labels}, D order {spec.d_downsample_order}; lod {summary.lod:g} -> sampled at "
        f"{summary.resolution}x{summary.resolution}, alpha {summary.alpha:g}."
    )
    print(f"Checkpoint step {summary.step} written to {workdir} (G -> raw, Gs -> ema, D -> discriminator).")
    print(f"Next: pggan-generate --workdir={workdir} --grid=4x4 --seed=0 --out=grid.png")


main = program_main(run)


def entry_point() -> None:
    """The console script `pggan-import`."""
    run_program(main, __name__)


if __name__ == "__main__":
    entry_point()
