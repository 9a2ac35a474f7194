"""Evaluating image sets: a generator or a folder of images against a dataset, a folder or published statistics.

Shared by tools/evaluate.py and the trainer's metrics during training (`pggan.training.periodic_metrics`). The
image sets and their order are those of `pggan.image_sets`. The protocol of one evaluation:

  - Counts: the feature metrics (fid, kid, is, pr_inception, pr_vgg16) compare `num_reals` reals
    (0 = all of the set) with `num_fakes` fakes; swd and ms_ssim take the first `num_images` of each
    set (swd needs as many fakes as reals). Sets with fewer images are used whole, with a log line.
  - Reals can be published FID statistics instead (`reference_stats`: the mu/sigma .npz of
    pytorch-fid or clean-fid, or ours): then only fid, is and ms_ssim can run.
  - Real statistics (`MetricSuite.real_statistics`) are kept in memory per resolution and cached on
    disk as `<cache dir>/real_stats/<reals>-<R>px-<n>-<hash>.npz`, the hash covering the real set's
    identity (a dataset's path, metadata and preparation time and level; a folder's file names, sizes
    and modification times), n, the seed, the metrics that need reals, the swd count, the protocol and
    the weights files. Cache dir: `$PGGAN_CACHE_DIR` or `~/.cache/pggan`.
  - Results are appended to `WORKDIR/metrics.jsonl` (checkpoints), one JSON object per evaluation
    (see `evaluation_record`); each figure's protocol and counts are in its `details`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh

from pggan import checkpoint
from pggan.data.dataset import PreparedDataset
from pggan.errors import UserError
from pggan.image_sets import DatasetImages, FolderImages, GeneratorImages, metric_resolution
from pggan.metrics import (
    ALL_METRICS,
    DEFAULT_PROTOCOL,
    INCEPTION_METRICS,
    MIN_IMAGES,
    PIXEL_METRICS,
    REAL_METRICS,
    VGG16_METRICS,
    InceptionFeatureExtractor,
    MetricSuite,
    VGG16FeatureExtractor,
    WeightsFileError,
    weights_files,
)
from pggan.metrics.inception import FEATURE_DIM
from pggan.metrics.inception_weights import INCEPTION_WEIGHTS
from pggan.metrics.protocols import inception_protocol
from pggan.metrics.reference_stats import FidStatistics, load_fid_statistics, save_fid_statistics
from pggan.metrics.vgg16_weights import VGG16_WEIGHTS
from pggan.model import networks

METRICS_FILE = "metrics.jsonl"
REFERENCE_STATS_METRICS = frozenset({"fid", "is", "ms_ssim"})  # what mu/sigma statistics can serve
_CACHE_FORMAT = 2
_CACHE_KEY_ENTRY = "_cache_key"


class EvaluationError(UserError):
    """Impossible evaluation settings (no metric left, too few images); the message says what to do."""


# Decimals per metric, one format everywhere (log lines, the evaluate tool's table); others get 4.
_DECIMALS = {"fid": 2, "is_mean": 2, "is_std": 2, "kid_mean": 5, "kid_std": 5}
_SWD_DECIMALS = 2


def format_value(name: str, value: float) -> str:
    """A metric value with the fixed number of decimals of its kind, e.g. swd_16 50.82 -> '50.82'."""
    decimals = _SWD_DECIMALS if name.startswith("swd_") else _DECIMALS.get(name, 4)
    return f"{value:.{decimals}f}"


def swd_levels(scores: dict[str, float]) -> list[int]:
    """The SWD pyramid levels present in `scores` (pixels per side), largest first."""
    return sorted((int(name[4:]) for name in scores if name.startswith("swd_") and name[4:].isdigit()), reverse=True)


def format_scores(scores: dict[str, float]) -> str:
    """Scores as people read them: 'SWD x1e3 32 px 42.00, 16 px 50.82 (mean of 16-32 px 46.41); fid 12.30'.

    Each SWD level is named by its size, so a level compares across stages and evaluations; the mean
    names the levels it averages (a new level joining the mean is not a regression).
    """
    parts = []
    levels = swd_levels(scores)
    if levels:
        per_level = ", ".join(f"{level} px {format_value('swd_', scores[f'swd_{level}'])}" for level in levels)
        mean = ""
        if "swd_avg" in scores and len(levels) > 1:
            mean = f" (mean of {levels[-1]}-{levels[0]} px {format_value('swd_', scores['swd_avg'])})"
        parts.append(f"SWD x1e3 {per_level}{mean}")
    others = [f"{name} {format_value(name, value)}" for name, value in scores.items() if not name.startswith("swd_")]
    if others:
        parts.append("  ".join(others))
    return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class Result:
    """scores: {'fid': ..., 'swd_avg': ...}; details: per metric {'protocol', 'num_reals', 'num_fakes'}
    (`MetricSuite.details`)."""

    scores: dict[str, float]
    details: dict[str, dict]


def build_suite(
    names: Sequence[str],
    *,
    protocol: str = DEFAULT_PROTOCOL,
    inception_weights_path: str | None = None,
    vgg16_weights_path: str | None = None,
    seed: int = 0,
    num_images: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[MetricSuite, str | None, dict[str, str]]:
    """The MetricSuite of `names`; metrics whose weights are missing are dropped, with a note.

    inception_weights_path, vgg16_weights_path: the .pth files; None reads $PGGAN_INCEPTION_WEIGHTS /
    $PGGAN_VGG16_WEIGHTS. Returns (suite, note, digests): note is None, or a one-line message saying
    which metrics were dropped and how to get the weights; digests maps each network used to the
    SHA-256 of its file. Raises EvaluationError when no requested metric can run.
    """
    names = tuple(names)
    if not names:
        raise EvaluationError(f"no metrics chosen; choose among {','.join(ALL_METRICS)}")
    inception_protocol(protocol)  # an unknown protocol is refused even without the weights
    networks_needed = [
        (INCEPTION_WEIGHTS, INCEPTION_METRICS, inception_weights_path),
        (VGG16_WEIGHTS, VGG16_METRICS, vgg16_weights_path),
    ]
    extractors, notes, digests, kept = {}, [], {}, list(names)
    for spec, metric_names, path in networks_needed:
        if not metric_names & set(names):
            continue
        try:
            params = weights_files.load_params(spec, path, cache_dir)
            digests[spec.network] = weights_files.file_digest(weights_files.resolve_weights_path(spec, path))
        except WeightsFileError as error:
            dropped = [n for n in kept if n in metric_names]
            kept = [n for n in kept if n not in metric_names]
            notes.append(f"skipping {','.join(dropped)}: {error}")
            if not kept:
                raise EvaluationError(" ".join(notes)) from None
            continue
        extractors[spec.network] = (
            InceptionFeatureExtractor(params, protocol) if spec is INCEPTION_WEIGHTS else VGG16FeatureExtractor(params)
        )
    suite = MetricSuite(
        kept,
        seed=seed,
        inception=extractors.get(INCEPTION_WEIGHTS.network),
        vgg16=extractors.get(VGG16_WEIGHTS.network),
        protocol=protocol,
        num_images=num_images,
    )
    return suite, " ".join(notes) or None, digests


def check_reference_metrics(names: Sequence[str]) -> None:
    """Raises EvaluationError unless FID statistics (mu, sigma) can serve every metric of `names`."""
    beyond = [n for n in names if n not in REFERENCE_STATS_METRICS]
    if beyond:
        raise EvaluationError(
            f"FID statistics (mu, sigma) serve fid, is and ms_ssim only: drop {','.join(beyond)} "
            "from the metrics, or compare with images"
        )


def _counted(batches: Iterable, counter: list[int]) -> Iterator:
    for batch in batches:
        counter[0] += len(batch)
        yield batch


class Evaluator:
    """Evaluates fake image sets against one real set (or published statistics) with one set of metrics.

    Args:
      reals: a prepared dataset (the level of each evaluation's resolution is used), a folder of
        images, FID statistics (`load_reference_statistics`), or None when no metric compares with reals.
      names: metrics among ALL_METRICS (`parse_metric_names`).
      num_images: images per set for swd and ms_ssim (the first ones); also the default of the others.
      num_reals: reals for the feature metrics; 0 = all of the set; None = num_images.
      num_fakes: fakes for the feature metrics; None = num_images.
      protocol: the Inception preprocessing (`pggan.metrics.PROTOCOLS`).
      batch_size: images per generator and metric step over all devices of `mesh`.
      seed: chooses the image order (so the subsets), the fake latents and the metrics' random draws.
      inception_weights_path, vgg16_weights_path: the weights files; None reads $PGGAN_INCEPTION_WEIGHTS
        and $PGGAN_VGG16_WEIGHTS. Without usable weights those metrics are dropped and `note` says how to
        get them.
      cache_dir: root of the real-statistics and weights caches (None: $PGGAN_CACHE_DIR or ~/.cache/pggan).
      mesh: 1-D 'data' mesh for the generator (default: this process's devices).
      progress: show progress bars (images/s).
      reals_name: the reals' name in records (default: the dataset's name or the folder's path).

    Raises:
      EvaluationError: no metric can run, impossible counts, or metrics that statistics cannot serve.
      MetricInputError: unknown metric or protocol; statistics that do not fit.
    """

    def __init__(
        self,
        reals: PreparedDataset | FolderImages | FidStatistics | None,
        names: Sequence[str],
        *,
        num_images: int,
        num_reals: int | None = None,
        num_fakes: int | None = None,
        protocol: str = DEFAULT_PROTOCOL,
        batch_size: int = 64,
        seed: int = 0,
        inception_weights_path: str | None = None,
        vgg16_weights_path: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        mesh: Mesh | None = None,
        progress: bool = False,
        reals_name: str | None = None,
    ):
        num_reals = num_images if num_reals is None else num_reals
        num_fakes = num_images if num_fakes is None else num_fakes
        if min(num_images, num_fakes) < MIN_IMAGES or (num_reals and num_reals < MIN_IMAGES) or batch_size < 1:
            raise EvaluationError(
                f"num_images, num_reals (unless 0: all) and num_fakes must be >= {MIN_IMAGES} and "
                f"batch_size >= 1, got {num_images}, {num_reals}, {num_fakes} and {batch_size}"
            )
        if isinstance(reals, FidStatistics):
            check_reference_metrics(names)
        if reals is None and REAL_METRICS & set(names):
            raise EvaluationError(
                f"{','.join(n for n in names if n in REAL_METRICS)} compare with reals: give real images or statistics"
            )
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else weights_files.cache_dir()
        self.suite, self.note, self._digests = build_suite(
            names,
            protocol=protocol,
            inception_weights_path=inception_weights_path,
            vgg16_weights_path=vgg16_weights_path,
            seed=seed,
            num_images=num_images,
            cache_dir=self.cache_dir,
        )
        self.reals, self.protocol, self.seed, self.mesh, self.progress = reals, protocol, seed, mesh, progress
        self.batch_size, self.num_images, self.num_reals, self.num_fakes = batch_size, num_images, num_reals, num_fakes
        self._real_stats: dict[int, dict[str, np.ndarray]] = {}
        self._reals_name = reals_name

    @property
    def names(self) -> tuple[str, ...]:
        """The metrics that run (metrics without their weights dropped)."""
        return self.suite.names

    @property
    def reals_name(self) -> str:
        """The real set's name for records: a dataset's name or a folder's path unless `reals_name` was given."""
        if self._reals_name or self.reals is None:
            return self._reals_name or "none"
        return self.reals.name if not isinstance(self.reals, FidStatistics) else "reference statistics"

    # ------------------------------------------------------------------------------ real statistics

    def real_images(self, resolution: int) -> DatasetImages | FolderImages:
        """The real image set an evaluation at `resolution` compares with."""
        return DatasetImages(self.reals, resolution) if isinstance(self.reals, PreparedDataset) else self.reals

    def real_count(self, available: int) -> int:
        """How many reals the real pass reads from a set of `available` images."""
        wanted = 0
        if (REAL_METRICS - PIXEL_METRICS) & set(self.names):
            wanted = self.num_reals or available
        if "swd" in self.names:
            wanted = max(wanted, self.num_images)
        if wanted > available:
            logging.info("Using all %d real images (fewer than the %d asked for).", available, wanted)
        return min(wanted, available)

    def fake_count(self) -> int:
        """How many fakes each evaluation generates or reads."""
        wanted = self.num_fakes if set(self.names) - PIXEL_METRICS else 0
        return max(wanted, self.num_images if PIXEL_METRICS & set(self.names) else 0)

    def cache_key(self, images: DatasetImages | FolderImages) -> dict:
        """Everything the real statistics of `images` depend on (JSON-serialisable)."""
        uses_protocol = bool(REAL_METRICS & INCEPTION_METRICS & set(self.names))
        return {
            "format": _CACHE_FORMAT,
            "reals": images.identity(),
            "num_images": self.real_count(images.num_available),
            "seed": self.seed,
            "statistics": sorted(REAL_METRICS & set(self.names)),
            "swd_images": self.num_images if "swd" in self.names else None,
            "protocol": self.protocol if uses_protocol else None,
            "weights": self._digests,
        }

    def cache_path(self, images: DatasetImages | FolderImages) -> Path:
        """The .npz file of the real statistics of `images`."""
        key = json.dumps(self.cache_key(images), sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        name = os.path.basename(images.name.rstrip("/")) or "images"
        level = f"-{images.resolution}px" if isinstance(images, DatasetImages) else ""
        return self.cache_dir / "real_stats" / f"{name}{level}-{self.real_count(images.num_available)}-{digest}.npz"

    def _load_cached(self, path: Path, key: str) -> dict[str, np.ndarray] | None:
        try:
            with np.load(path) as cached:
                stats = {k: cached[k] for k in cached.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            return None  # missing or damaged: recomputed
        return stats if str(stats.pop(_CACHE_KEY_ENTRY, "")) == key else None

    def _save_cache(self, path: Path, key: str, stats: dict[str, np.ndarray]) -> None:
        partial = path.with_name(f"{path.stem}.{os.getpid()}.{jax.process_index()}.tmp.npz")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(partial, **stats, **{_CACHE_KEY_ENTRY: np.asarray(key)})
            partial.replace(path)  # atomic: a concurrent reader never sees half a file
        except OSError as error:
            logging.warning(
                "Could not cache the real statistics in %s (%s); they will be computed again "
                "next time. Set $PGGAN_CACHE_DIR to a writable directory.",
                path.parent,
                error,
            )

    def real_statistics(self, resolution: int) -> dict[str, np.ndarray]:
        """The suite's real statistics at `resolution`: from memory, the disk cache, or computed and cached."""
        if not REAL_METRICS & set(self.names):
            return {}  # is and ms_ssim look at the fakes only
        if isinstance(self.reals, FidStatistics):
            stats = {
                "inception_mean": self.reals.mean,
                "inception_cov": self.reals.cov,
                "protocol": np.asarray(self.protocol),
            }
            if self.reals.num_images is not None:
                stats["num_images"] = np.int64(self.reals.num_images)
            return stats
        if resolution not in self._real_stats:
            images = self.real_images(resolution)
            key = json.dumps(self.cache_key(images), sort_keys=True)
            path = self.cache_path(images)
            stats = self._load_cached(path, key)
            if stats is None:
                batches = images.batches(
                    self.real_count(images.num_available), self.batch_size, self.seed, self.progress
                )
                with contextlib.closing(batches):  # a failed pass closes its progress bar before the error shows
                    stats = self.suite.real_statistics(batches)
                if images.skipped:
                    logging.warning(
                        "Skipped %d unreadable real images, e.g. %s", images.num_skipped, "; ".join(images.skipped)
                    )
                self._save_cache(path, key, stats)
            self._real_stats[resolution] = stats
        return self._real_stats[resolution]

    def save_statistics(self, path: str | os.PathLike, resolution: int) -> int:
        """Writes the reals' FID statistics (mu, sigma, protocol, count) as pytorch-fid's .npz; returns the count."""
        stats = self.real_statistics(resolution)
        if "inception_mean" not in stats:
            raise EvaluationError("saving statistics needs fid among the metrics (and the Inception weights)")
        save_fid_statistics(
            path, stats["inception_mean"], stats["inception_cov"], self.protocol, int(stats["num_images"])
        )
        return int(stats["num_images"])

    # ------------------------------------------------------------------------------------- fakes

    def _score(self, fake_batches: Iterator, resolution: int) -> Result:
        with contextlib.closing(fake_batches):
            real_stats = self.real_statistics(resolution)
            counter = [0]
            scores = self.suite.evaluate(_counted(fake_batches, counter), real_stats)
        return Result(scores, self.suite.details(real_stats, counter[0]))

    def evaluate(self, generator: networks.Generator, resolution: int, alpha: float) -> Result:
        """Scores of `generator` at (resolution, alpha) against the reals (their level `resolution`)."""
        fakes = GeneratorImages(generator, resolution, alpha, self.mesh)
        return self._score(fakes.batches(self.fake_count(), self.batch_size, self.seed, self.progress), resolution)

    def evaluate_images(self, fakes: FolderImages, resolution: int) -> Result:
        """Scores of a folder of images against the reals (a dataset's level `resolution`)."""
        if self.fake_count() > fakes.num_available:
            logging.info(
                "Using all %d images of %s (fewer than the %d asked for).",
                fakes.num_available,
                fakes.path,
                self.fake_count(),
            )
        result = self._score(fakes.batches(self.fake_count(), self.batch_size, self.seed, self.progress), resolution)
        if fakes.skipped:
            logging.warning("Skipped %d unreadable images, e.g. %s", fakes.num_skipped, "; ".join(fakes.skipped))
        return result


def load_reference_statistics(path: str, protocol: str) -> FidStatistics:
    """Published FID statistics for the Inception pool_3 features under `protocol` (one-line errors)."""
    stats = load_fid_statistics(path, FEATURE_DIM, protocol)
    if stats.protocol is None:
        logging.warning(
            "%s does not record its preprocessing: it is taken as protocol %s; make sure it was "
            "computed that way (see docs/metrics.md).",
            path,
            protocol,
        )
    return stats


# ---------------------------------------------------------------------------------------- records


def evaluation_record(*, result: Result, seconds: float, source: str, reals: str, **fields) -> dict:
    """One line of metrics.jsonl.

    Fields: time (UTC, ISO 8601), source ('training' or 'evaluate.py'), the given `fields` (for a
    checkpoint: step (images shown), kimg, resolution and alpha of the generator, metric_resolution (16
    for 4 and 8 px stages), network ('ema' or 'raw'); for a folder: fakes, its path), reals (the dataset's
    name, a folder's path or 'reference statistics'), seconds (wall time of the evaluation), metrics
    ({name: float}) and details (per metric: protocol, num_reals, num_fakes).
    """
    record = {"time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "source": source}
    if "step" in fields:
        fields = {
            "step": int(fields["step"]),
            "kimg": fields["step"] / 1000,
            "resolution": int(fields["resolution"]),
            "alpha": float(fields["alpha"]),
            "metric_resolution": metric_resolution(fields["resolution"]),
            "network": fields["network"],
        }
    record.update(fields)
    record.update(
        {
            "reals": reals,
            "seconds": round(float(seconds), 3),
            "metrics": {name: float(value) for name, value in result.scores.items()},
            "details": result.details,
        }
    )
    return record


def append_record(path: str, record: dict) -> str:
    """Appends `record` as one JSON line to `path` (a metrics.jsonl file, or a directory holding it)."""
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_FILE)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    return path


def read_records(workdir: str) -> list[dict]:
    """Every record of WORKDIR/metrics.jsonl in file order ([] if there is none)."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def evaluate_checkpoint(evaluator: Evaluator, workdir: str, step: int, network: str = "ema") -> dict:
    """Evaluates one checkpoint's generator at its own resolution and alpha; returns its record."""
    start = time.time()
    generator, meta = checkpoint.load_generator(workdir, step=step, network=network)
    result = evaluator.evaluate(generator, meta["resolution"], meta["alpha"])
    return evaluation_record(
        result=result,
        seconds=time.time() - start,
        source="evaluate.py",
        reals=evaluator.reals_name,
        step=step,
        resolution=meta["resolution"],
        alpha=meta["alpha"],
        network=network,
    )
