"""Scores image sets: a training run's generator, or any folder of images, against reals or published statistics.

  # the latest checkpoint, every metric: FID/KID/IS/PR of 50,000 fakes against all reals (StyleGAN's
  # protocol, tf1), SWD and MS-SSIM on 10,000 images
  pggan-evaluate --workdir=runs/quickstart
  # every checkpoint in step order, SWD and MS-SSIM only
  pggan-evaluate --workdir=runs/quickstart --all --metrics=swd,ms_ssim --num_images=2000
  # another system's samples against a folder of real images, as the pytorch_fid command scores them
  pggan-evaluate --fakes=samples/ --reals=photos/ --metrics=fid --protocol=pytorch_fid
  # against published statistics (the mu/sigma .npz of pytorch-fid or clean-fid), clean-fid's protocol
  pggan-evaluate --fakes=samples/ --reference_stats=ffhq_clean_trainval70k_1024.npz --protocol=clean
  # write the FID statistics of a prepared dataset, readable by pytorch-fid and clean-fid
  pggan-evaluate --reals=celebahq --save_stats=celebahq_tf1.npz

Fakes: --workdir (each checkpoint at the resolution and fade-in it was trained at; --fakes=WORKDIR
too) or --fakes=DIR (image files, searched recursively). Reals: --reals=DIR (image files) or
--reals=NAME (a prepared dataset in --data_dir; a run's own dataset by default), or
--reference_stats=FILE (fid, is and ms_ssim only). 4 and 8 px stages and dataset levels are upscaled
to 16x16 for every metric.

Counts: fid, kid, is, pr_inception and pr_vgg16 compare --num_reals reals (0 = all) with --num_fakes
fakes; swd and ms_ssim take the first --num_images of each set, which must be square images of one
size. Every figure is printed with its protocol and counts, and recorded with them (`details`) in
WORKDIR/metrics.jsonl for checkpoints (the record of a folder is printed as JSON).

Protocols (the Inception preprocessing; docs/metrics.md tells which tool gives the same numbers):
  tf1          TF1 bilinear resize to 299: the TF FID code, StyleGAN 1/2/ADA/3, torch-fidelity,
               clean-fid mode='legacy_tensorflow' (the default)
  pytorch_fid  PyTorch bilinear resize to 299 of x/255: `python -m pytorch_fid`
  clean        Pillow bicubic resize to 299 of float images: clean-fid's default mode='clean'
pr_vgg16 always follows StyleGAN2-ADA's VGG16 protocol (TF1 bilinear resize to 224).

fid, kid, is and pr_inception need pytorch-fid's Inception weights (pt_inception-2015-12-05-6726825d.pth),
pr_vgg16 torchvision's VGG16 weights (vgg16-397923af.pth), as local files: nothing is downloaded.
Without them those metrics are skipped with a message saying how to get the file.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import flags
from tqdm import tqdm

from pggan import checkpoint, evaluation
from pggan.cli import checkpoint_flags
from pggan.cli.runner import UsageError, program_main, run_program
from pggan.data.dataset import PreparedDataset, check_dataset, open_dataset
from pggan.image_sets import FolderImages
from pggan.metrics import ALL_METRICS, DEFAULT_PROTOCOL, MIN_IMAGES, PROTOCOLS, REAL_METRICS, parse_metric_names

_ALL = flags.DEFINE_bool(
    "all", False, "Evaluate every checkpoint of the run, in step order (instead of --step, --resolution or the latest)."
)
_METRICS = flags.DEFINE_list(
    "metrics",
    list(ALL_METRICS),
    "Metrics to compute, comma-separated, among "
    f"{','.join(ALL_METRICS)}. fid, kid, is and pr_inception need the Inception weights, "
    "pr_vgg16 the VGG16 weights.",
)
_PROTOCOL = flags.DEFINE_enum(
    "protocol",
    DEFAULT_PROTOCOL,
    list(PROTOCOLS),
    "Preprocessing of the Inception "
    "metrics (fid, kid, is, pr_inception): " + "; ".join(f"{p.name}: {p.summary}" for p in PROTOCOLS.values()) + ".",
)
_NUM_IMAGES = flags.DEFINE_integer(
    "num_images",
    10000,
    "Images per set for swd and ms_ssim (the first ones of the "
    "set's seeded order; the SWD reference protocol uses 16384).",
    lower_bound=MIN_IMAGES,
)
_NUM_REALS = flags.DEFINE_integer(
    "num_reals",
    0,
    "Reals for fid, kid, pr_inception and pr_vgg16: a seeded subset, 0 = all of the set (StyleGAN's fid50k_full).",
    lower_bound=0,
)
_NUM_FAKES = flags.DEFINE_integer(
    "num_fakes",
    50000,
    "Fakes for fid, kid, is, pr_inception and pr_vgg16 (a folder with fewer is used whole).",
    lower_bound=MIN_IMAGES,
)
_REALS = flags.DEFINE_string(
    "reals",
    "",
    "The real images: a folder of image files, or the name of a prepared "
    "dataset in --data_dir. Default: the run's dataset.",
)
_FAKES = flags.DEFINE_string(
    "fakes",
    "",
    "The images to score: a folder of image files (searched recursively), or a "
    "training run's workdir (same as --workdir).",
)
_REFERENCE_STATS = flags.DEFINE_string(
    "reference_stats",
    "",
    "FID statistics to compare with instead of reals: an "
    ".npz with mu and sigma (pytorch-fid, clean-fid or --save_stats). Serves fid, "
    "is and ms_ssim.",
)
_SAVE_STATS = flags.DEFINE_string(
    "save_stats",
    "",
    "Write the reals' FID statistics (mu, sigma; the protocol and "
    "count too) to this .npz, readable by pytorch-fid and clean-fid. Adds fid to "
    "--metrics; without fakes nothing else is computed.",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    "",
    "Directory of prepared datasets. Default: the run's "
    "config.dataset.data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets if empty).",
)
_DATASET = flags.DEFINE_string(
    "dataset", "", "Prepared dataset name (as --reals=NAME). Default: the run's config.dataset.name."
)
_INCEPTION_WEIGHTS = flags.DEFINE_string(
    "inception_weights",
    "",
    "Path of pt_inception-2015-12-05-6726825d.pth for fid, kid, is and pr_inception. "
    "Default: $PGGAN_INCEPTION_WEIGHTS.",
)
_VGG16_WEIGHTS = flags.DEFINE_string(
    "vgg16_weights", "", "Path of torchvision's vgg16-397923af.pth for pr_vgg16. Default: $PGGAN_VGG16_WEIGHTS."
)
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", "", "Cache of real statistics and converted weights. Default: $PGGAN_CACHE_DIR or ~/.cache/pggan."
)

checkpoint_flags.take(__name__, *checkpoint_flags.NAMES)

DEFAULT_BATCH_SIZE = 64

_CHECKPOINT_COLUMNS = (("step", "{:d}"), ("kimg", "{:.1f}"), ("resolution", "{:d}"), ("alpha", "{:.3f}"))


def _steps(workdir: str) -> list[int]:
    """The checkpoints to evaluate, in step order; damaged ones are skipped with a warning (or refused if
    asked for by --step)."""
    if not _ALL.value:
        choice = checkpoint_flags.checkpoint_choice(workdir)
        with checkpoint.CheckpointReader(workdir) as reader:
            return [reader.select(choice["step"], choice["resolution"], choice["network"])]
    for name in ("step", "resolution"):
        if flags.FLAGS[name].present:
            raise UsageError(f"--all evaluates every checkpoint: drop --{name}")
    with checkpoint.CheckpointReader(workdir) as reader:
        return reader.intact(reader.steps(), checkpoint_flags.NETWORK.value)


def _run_dataset(workdir: str, step: int) -> PreparedDataset:
    """The prepared dataset of the run (from the checkpoint's config, or --data_dir / --dataset)."""
    with checkpoint.CheckpointReader(workdir) as reader:
        config = json.loads(reader.meta(step)["config"])
    dataset = open_dataset(
        _DATASET.value or config["dataset"]["name"], _DATA_DIR.value or config["dataset"]["data_dir"] or None
    )
    model = config["model"]
    check_dataset(
        dataset, resolution=model["resolution"], channels=model["num_channels"], label_size=model["label_size"]
    )
    return dataset


def _given_reals(names: tuple[str, ...]):
    """The reals named by --reals / --dataset / --reference_stats (None: the run's dataset)."""
    given = [f"--{f.name}" for f in (_REALS, _DATASET, _REFERENCE_STATS) if f.value]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} both choose the reals: give one of them")
    if _REFERENCE_STATS.value:
        if _SAVE_STATS.value:
            raise UsageError("--save_stats writes the statistics of reals: use --reals, not --reference_stats")
        evaluation.check_reference_metrics(names)
        return evaluation.load_reference_statistics(_REFERENCE_STATS.value, _PROTOCOL.value)
    name = _REALS.value or _DATASET.value
    if not name:
        return None
    if os.path.isdir(name):
        if os.path.isfile(os.path.join(name, "dataset_info.json")):
            return PreparedDataset.from_directory(name)
        return FolderImages(name)
    return open_dataset(name, _DATA_DIR.value or None)


def _fakes_workdir() -> str | None:
    """The run whose checkpoints are scored (--workdir, or --fakes naming a run), or None."""
    if _FAKES.value and os.path.isdir(os.path.join(_FAKES.value, "checkpoints")):
        if checkpoint_flags.WORKDIR.value:
            raise UsageError("--workdir and --fakes both choose the fakes: give one of them")
        return _FAKES.value
    if _FAKES.value and checkpoint_flags.WORKDIR.value:
        raise UsageError("--workdir and --fakes both choose the fakes: give one of them")
    return checkpoint_flags.WORKDIR.value or None


def format_table(records: list[dict]) -> str:
    """One row per record: step, kimg, resolution, alpha (checkpoints) or fakes (a folder), then every
    metric (`evaluation.format_value`). SWD levels come first, largest first (checkpoints of different
    stages have different levels)."""
    metric_names = list(dict.fromkeys(name for r in records for name in r["metrics"]))
    levels = [f"swd_{level}" for level in evaluation.swd_levels(dict.fromkeys(metric_names))]
    metric_names = levels + [n for n in metric_names if n not in levels]
    columns = _CHECKPOINT_COLUMNS if "step" in records[0] else (("fakes", "{}"),)
    header = [name for name, _ in columns] + metric_names
    rows = [
        [fmt.format(r[name]) for name, fmt in columns]
        + [evaluation.format_value(m, r["metrics"][m]) if m in r["metrics"] else "-" for m in metric_names]
        for r in records
    ]
    return _aligned([header, *rows])


def format_details(record: dict) -> str:
    """What each metric compared: one row per metric with its protocol, reals and fakes."""
    rows = [["metric", "protocol", "reals", "fakes"]]
    for name, detail in record["details"].items():
        reals = detail.get("num_reals", "-")
        rows.append(
            [name, detail.get("protocol", "-"), str("?" if reals is None else reals), str(detail.get("num_fakes", "-"))]
        )
    return _aligned(rows)


def _aligned(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def _evaluator(reals, names, reals_name: str | None = None) -> evaluation.Evaluator:
    evaluator = evaluation.Evaluator(
        reals,
        names,
        num_images=_NUM_IMAGES.value,
        num_reals=_NUM_REALS.value,
        num_fakes=_NUM_FAKES.value,
        protocol=_PROTOCOL.value,
        batch_size=checkpoint_flags.BATCH_SIZE.value or DEFAULT_BATCH_SIZE,
        seed=checkpoint_flags.SEED.value,
        inception_weights_path=_INCEPTION_WEIGHTS.value or None,
        vgg16_weights_path=_VGG16_WEIGHTS.value or None,
        cache_dir=_CACHE_DIR.value or None,
        progress=True,
        reals_name=reals_name,
    )
    if evaluator.note:
        print(f"warning: {evaluator.note}", file=sys.stderr)
    return evaluator


def _save_stats(evaluator: evaluation.Evaluator, resolution: int) -> None:
    count = evaluator.save_statistics(_SAVE_STATS.value, resolution)
    print(
        f"Wrote the FID statistics of {count} images of {evaluator.reals_name} (protocol {evaluator.protocol}) "
        f"to {_SAVE_STATS.value}."
    )


def _evaluate_checkpoints(workdir: str, reals, names) -> None:
    steps = _steps(workdir)
    reals = _run_dataset(workdir, steps[0]) if reals is None else reals
    evaluator = _evaluator(reals, names, _REFERENCE_STATS.value or None)
    print(
        f"Evaluating {len(steps)} checkpoint(s) of {workdir} ({checkpoint_flags.NETWORK.value} generator) against "
        f"{evaluator.reals_name}: {','.join(evaluator.names)}."
    )
    records = []
    for step in tqdm(steps, unit="ckpt", desc="checkpoints", disable=len(steps) == 1):
        records.append(evaluation.evaluate_checkpoint(evaluator, workdir, step, checkpoint_flags.NETWORK.value))
        path = evaluation.append_record(workdir, records[-1])
    print(format_table(records))
    print(format_details(records[-1]))
    print(f"Appended {len(records)} record(s) to {path}.")
    if _SAVE_STATS.value:
        _save_stats(evaluator, records[-1]["resolution"])


def _dataset_level(reals) -> int:
    """The dataset level a folder of fakes (or --save_stats) is compared with: --resolution or the top level."""
    if not isinstance(reals, PreparedDataset):
        return 0
    return checkpoint_flags.RESOLUTION.value or reals.resolution


def run() -> None:
    names = parse_metric_names(_METRICS.value)
    if _SAVE_STATS.value and "fid" not in names:
        names += ("fid",)
    reals = _given_reals(names)
    workdir = _fakes_workdir()
    if workdir:
        _evaluate_checkpoints(workdir, reals, names)
        return
    if reals is None and (REAL_METRICS & set(names) or not _FAKES.value):
        raise UsageError(
            "nothing to compare: give --workdir (a run) or --fakes=DIR with --reals=DIR_OR_DATASET "
            "or --reference_stats=FILE, or --reals with --save_stats"
        )
    if not _FAKES.value:
        if not _SAVE_STATS.value:
            raise UsageError("no fakes: give --fakes=DIR or --workdir, or --save_stats to only write statistics")
        _save_stats(_evaluator(reals, ("fid",)), _dataset_level(reals))
        return
    fakes = FolderImages(_FAKES.value)
    evaluator = _evaluator(reals, names, _REFERENCE_STATS.value or None)
    print(
        f"Evaluating {fakes.num_available} images of {fakes.path} against {evaluator.reals_name}: "
        f"{','.join(evaluator.names)}."
    )
    start = time.time()
    result = evaluator.evaluate_images(fakes, _dataset_level(reals))
    record = evaluation.evaluation_record(
        result=result, seconds=time.time() - start, source="evaluate.py", reals=evaluator.reals_name, fakes=fakes.path
    )
    if _SAVE_STATS.value:
        _save_stats(evaluator, _dataset_level(reals))
    print(format_table([record]))
    print(format_details(record))
    print(json.dumps(record))


main = program_main(run)


def entry_point() -> None:
    """The console script `pggan-evaluate`."""
    run_program(main, __name__)


if __name__ == "__main__":
    entry_point()
