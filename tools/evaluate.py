"""Evaluates a training run's generator: SWD, MS-SSIM, FID, KID, IS, precision/recall.

  # the latest checkpoint, every metric, 10,000 images
  python tools/evaluate.py --workdir=runs/quickstart
  # every checkpoint in step order, SWD and MS-SSIM only
  python tools/evaluate.py --workdir=runs/quickstart --all --metrics=swd,ms_ssim --num_images=2000
  # FID and KID of the latest checkpoint, with the Inception weights (else $PGGAN_INCEPTION_WEIGHTS)
  python tools/evaluate.py --workdir=runs/celebahq --metrics=fid,kid --inception_weights=pt_inception.pth

Each checkpoint is evaluated at the resolution and fade-in it was trained at, against the level of
that resolution of the run's dataset (the data_dir and name saved in the checkpoint's config, or
--data_dir / --dataset). 4 and 8 px stages are upscaled to 16x16 for every metric (see
pggan/evaluation.py). Real statistics are cached per dataset, resolution, image count, seed and
metric set in $PGGAN_CACHE_DIR or ~/.cache/pggan (or --cache_dir). Prints a table (one row per
checkpoint) and appends one JSON line per checkpoint to WORKDIR/metrics.jsonl.

fid, kid, is and pr need pytorch-fid's Inception weights (pt_inception-2015-12-05-6726825d.pth, a
local file; nothing is downloaded): without them those metrics are skipped with a message saying how
to get the file, and the others still run.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags
from tqdm import tqdm

from pggan import checkpoint, cli, evaluation
from pggan.data.dataset import check_dataset, open_dataset
from pggan.data.errors import DataError
from pggan.metrics import ALL_METRICS, MIN_IMAGES, MetricError, parse_metric_names

_ALL = flags.DEFINE_bool("all", False, "Evaluate every checkpoint of the run, in step order (instead of --step, "
                         "--resolution or the latest).")
_METRICS = flags.DEFINE_list("metrics", list(ALL_METRICS), "Metrics to compute, comma-separated, among "
                             f"{','.join(ALL_METRICS)}. fid, kid, is and pr need the Inception weights.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 10000, "Real and fake images per evaluation (reals: a fixed "
                                   "seeded subset, clipped to the dataset size). The reference protocols use "
                                   "16384 (SWD) and 10000-50000 (FID).", lower_bound=MIN_IMAGES)
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Directory of prepared datasets. Default: the run's "
                                "config.dataset.data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets if empty).")
_DATASET = flags.DEFINE_string("dataset", "", "Prepared dataset name. Default: the run's config.dataset.name.")
_INCEPTION_WEIGHTS = flags.DEFINE_string(
    "inception_weights", "", "Path of pt_inception-2015-12-05-6726825d.pth for fid, kid, is and pr. Default: "
    "$PGGAN_INCEPTION_WEIGHTS.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "", "Cache of real statistics and converted Inception weights. "
                                 "Default: $PGGAN_CACHE_DIR or ~/.cache/pggan.")

flags.adopt_module_key_flags(cli)  # --workdir, --step, --resolution, --network, --seed, --batch_size in --help

DEFAULT_BATCH_SIZE = 64

_FIXED_COLUMNS = (("step", "{:d}"), ("kimg", "{:.1f}"), ("resolution", "{:d}"), ("alpha", "{:.3f}"))


def _steps(workdir: str) -> list[int]:
    """The checkpoints to evaluate, in step order; damaged ones are skipped with a warning (or refused if
    asked for by --step)."""
    if not _ALL.value:
        choice = cli.checkpoint_choice()
        return [checkpoint.select_step(workdir, step=choice["step"], resolution=choice["resolution"],
                                       network=choice["network"])]
    for name in ("step", "resolution"):
        if flags.FLAGS[name].present:
            raise cli.UsageError(f"--all evaluates every checkpoint: drop --{name}")
    return checkpoint.intact_steps(workdir, checkpoint.all_steps(workdir), cli.NETWORK.value)


def _open_run_dataset(workdir: str, step: int):
    """The prepared dataset of the run (from the checkpoint's config, or --data_dir / --dataset)."""
    config = json.loads(checkpoint.read_meta(workdir, step)["config"])
    name = _DATASET.value or config["dataset"]["name"]
    dataset = open_dataset(name, _DATA_DIR.value or config["dataset"]["data_dir"] or None)
    model = config["model"]
    check_dataset(dataset, resolution=model["resolution"], channels=model["num_channels"],
                  label_size=model["label_size"])
    return dataset


def format_table(records: list[dict]) -> str:
    """One row per record: step, kimg, resolution, alpha, then every metric (4 significant digits).

    SWD levels come first, largest first (checkpoints of different stages have different levels).
    """
    metric_names = list(dict.fromkeys(name for r in records for name in r["metrics"]))
    levels = sorted((n for n in metric_names if n.startswith("swd_") and n[4:].isdigit()), key=lambda n: -int(n[4:]))
    metric_names = levels + [n for n in metric_names if n not in levels]
    header = [name for name, _ in _FIXED_COLUMNS] + metric_names
    rows = [[fmt.format(r[name]) for name, fmt in _FIXED_COLUMNS]
            + [f"{r['metrics'][m]:.4g}" if m in r["metrics"] else "-" for m in metric_names] for r in records]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [header, *rows])


def run() -> None:
    workdir = cli.workdir()
    names = parse_metric_names(_METRICS.value)
    steps = _steps(workdir)
    dataset = _open_run_dataset(workdir, steps[0])
    evaluator = evaluation.Evaluator(
        dataset, names, num_images=_NUM_IMAGES.value, batch_size=cli.BATCH_SIZE.value or DEFAULT_BATCH_SIZE,
        seed=cli.SEED.value,
        inception_weights_path=_INCEPTION_WEIGHTS.value or None, cache_dir=_CACHE_DIR.value or None, progress=True)
    if evaluator.note:
        print(f"warning: {evaluator.note}", file=sys.stderr)
    print(f"Evaluating {len(steps)} checkpoint(s) of {workdir} ({cli.NETWORK.value} generator) against "
          f"{evaluator.num_images} images of {dataset.name}: {','.join(evaluator.names)}.")
    records = []
    for step in tqdm(steps, unit="ckpt", desc="checkpoints", disable=len(steps) == 1):
        record = evaluation.evaluate_checkpoint(evaluator, workdir, step, cli.NETWORK.value)
        path = evaluation.append_record(workdir, record)
        records.append(record)
    print(format_table(records))
    print(f"Appended {len(records)} record(s) to {path}.")


def main(argv: list[str]) -> int:
    def checked_run() -> None:
        if len(argv) > 1:
            raise cli.UsageError(f"unexpected arguments {' '.join(argv[1:])}: every setting is a --flag")
        run()

    return cli.run_tool(checked_run, extra_errors=(evaluation.EvaluationError, MetricError, DataError))


if __name__ == "__main__":
    app.run(main)
