"""Converts a network pickle of the official PGGAN code into a pggan checkpoint.

  python tools/import_official.py --pkl=karras2018iclr-celebahq-1024x1024.pkl --workdir=runs/celebahq

The pickle (the networks NVIDIA released with the paper, or a network-snapshot-*.pkl of the official
train.py) is read without TensorFlow and without executing anything from the file. The workdir then
works with tools/generate.py and tools/evaluate.py like any training run (EMA generator = official Gs).
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from tqdm import tqdm

from pggan.official import importer
from pggan.official.errors import SnapshotError

FLAGS = flags.FLAGS
flags.DEFINE_string("pkl", None, "Official network pickle: karras2018iclr-*.pkl or network-snapshot-*.pkl "
                    "holding (G, D, Gs).")
flags.DEFINE_string("workdir", None, "New pggan run directory to write the checkpoint to (must hold no checkpoints).")
flags.DEFINE_float("kimg", None, "Training progress to record in the checkpoint, in thousands of images "
                   "(default: from a network-snapshot-<kimg>.pkl file name, else 0).")
flags.mark_flags_as_required(["pkl", "workdir"])


def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every step of a save at INFO
    with tqdm(total=3, unit="stage", leave=False) as bar:
        started: list[str] = []

        def progress(stage: str) -> None:
            if started:
                bar.update(1)
            started.append(stage)
            bar.set_description(stage)

        try:
            summary = importer.import_snapshot(FLAGS.pkl, FLAGS.workdir, kimg=FLAGS.kimg, progress=progress)
        except SnapshotError as error:
            bar.close()  # erases the bar
            print(f"error: {error}", file=sys.stderr)
            return 1
        bar.update(1)
    spec = summary.spec
    labels = f"{spec.label_size} classes" if spec.label_size else "unconditional"
    print(f"Imported {FLAGS.pkl}: {spec.resolution}x{spec.resolution}x{spec.num_channels}, latent {spec.latent_size}, "
          f"{labels}, D order {spec.d_downsample_order}; lod {summary.lod:g} -> sampled at "
          f"{summary.resolution}x{summary.resolution}, alpha {summary.alpha:g}.")
    print(f"Checkpoint step {summary.step} written to {FLAGS.workdir} (G -> raw, Gs -> ema, D -> discriminator).")
    print(f"Next: python tools/generate.py --workdir={FLAGS.workdir} --grid=4x4 --seed=0 --out=grid.png")
    return 0


if __name__ == "__main__":
    app.run(main)
