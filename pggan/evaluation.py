"""Evaluating a generator against its prepared dataset: real subsets, fakes, cached real statistics, records.

Shared by tools/evaluate.py (checkpoints) and the trainer's metrics during training
(`pggan.training_metrics`). The protocol of one evaluation at resolution R (a power of two) and
fade-in alpha:

  - Reals: a fixed subset of `num_images` examples of the dataset level R, drawn without replacement
    by `np.random.default_rng([seed, 0])` (the whole level, with a log line, when it holds fewer),
    read in index order.
  - Fakes: as many images from the generator at (R, alpha), latents float32 N(0, I) drawn by
    `np.random.default_rng([seed, 1])`; a conditional model's image i gets class i mod label_size.
  - Small stages: SWD's Laplacian pyramid ends at 16x16 and MS-SSIM's five scales need sides divisible
    by 16, so images of 4 and 8 px stages, reals and fakes alike, are upscaled (nearest neighbour) to
    16x16 for every metric. Records say so in `metric_resolution`.
  - Real statistics (`MetricSuite.real_statistics`) are kept in memory per resolution and cached on
    disk as `<cache dir>/real_stats/<dataset>-<R>px-<n>-<hash>.npz`, the hash covering the dataset's
    identity (path, metadata, preparation time), R, n, the seed, the metrics that need reals and the
    Inception weights file. Cache dir: `$PGGAN_CACHE_DIR` or `~/.cache/pggan`.
  - Results are appended to `WORKDIR/metrics.jsonl`, one JSON object per evaluation (see
    `evaluation_record`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh
from tqdm import tqdm

from pggan import checkpoint, generation, networks
from pggan.data.dataset import PreparedDataset
from pggan.metrics import ALL_METRICS, INCEPTION_METRICS, MIN_IMAGES, MetricSuite, WeightsFileError
from pggan.metrics import INCEPTION_WEIGHTS, weights_files
from pggan.metrics.swd import MIN_RESOLUTION as METRIC_MIN_RESOLUTION

METRICS_FILE = "metrics.jsonl"
_REAL_STATISTICS_OF = frozenset({"swd", "fid", "kid", "pr_inception", "pr_vgg16"})  # metrics that compare with reals
_CACHE_FORMAT = 1
_CACHE_KEY_ENTRY = "_cache_key"


class EvaluationError(ValueError):
    """Impossible evaluation settings (no metric left, too few images); the message says what to do."""


def build_suite(names: Sequence[str], *, inception_weights_path: str | None = None, seed: int = 0,
                cache_dir: str | os.PathLike | None = None) -> tuple[MetricSuite, str | None]:
    """The MetricSuite of `names`; without usable Inception weights, the suite of the other metrics.

    inception_weights_path: the .pth file; None reads $PGGAN_INCEPTION_WEIGHTS.
    Returns (suite, note): note is None, or a one-line message saying which Inception metrics were
    dropped and how to get the weights. Raises EvaluationError when no requested metric can run.
    """
    names = tuple(names)
    if not names:
        raise EvaluationError(f"no metrics chosen; choose among {','.join(ALL_METRICS)}")
    try:
        return MetricSuite(names, inception_weights_path, seed=seed, cache=cache_dir), None
    except WeightsFileError as error:
        dropped = [n for n in names if n in INCEPTION_METRICS]
        kept = tuple(n for n in names if n not in INCEPTION_METRICS)
        if not kept:
            raise EvaluationError(str(error)) from None
        return MetricSuite(kept, seed=seed, cache=cache_dir), f"skipping {','.join(dropped)}: {error}"


def metric_resolution(resolution: int) -> int:
    """Side of the images the metrics see: the resolution, or 16 for 4 and 8 px stages."""
    return max(resolution, METRIC_MIN_RESOLUTION)


def upscale_for_metrics(images: np.ndarray) -> np.ndarray:
    """uint8 [N, R, R, C] -> [N, S, S, C] with S = metric_resolution(R), nearest neighbour."""
    factor = metric_resolution(images.shape[1]) // images.shape[1]
    return images if factor == 1 else images.repeat(factor, axis=1).repeat(factor, axis=2)


def real_subset(num_examples: int, num_images: int, seed: int) -> np.ndarray:
    """Sorted indices int64 [min(num_images, num_examples)] of the real images, a fixed seeded subset."""
    if num_images >= num_examples:
        return np.arange(num_examples)
    return np.sort(np.random.default_rng([seed, 0]).choice(num_examples, num_images, replace=False))


def fake_latents(num_images: int, latent_size: int, seed: int) -> np.ndarray:
    """Latents of the fakes: float32 [num_images, latent_size] ~ N(0, I), a fixed seeded stream."""
    return np.random.default_rng([seed, 1]).standard_normal((num_images, latent_size), dtype=np.float32)


def _file_fingerprint(path: str) -> dict:
    stat = os.stat(path)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def dataset_identity(dataset: PreparedDataset) -> dict:
    """What identifies a prepared dataset's contents: path, metadata and when it was prepared."""
    path = os.path.abspath(dataset.path)
    return {"path": path, "name": dataset.name, "num_examples": dataset.num_examples,
            "resolution": dataset.resolution, "channels": dataset.channels, "num_classes": dataset.num_classes,
            "levels": list(dataset.levels), "source": dataset.source,
            "prepared": _file_fingerprint(os.path.join(path, "dataset_info.json"))}


class Evaluator:
    """Evaluates generators of one dataset with one set of metrics; real statistics computed once.

    Args:
      dataset: the prepared dataset the generator was trained on.
      names: metrics among ALL_METRICS (`parse_metric_names`).
      num_images: reals and fakes per evaluation (clipped to the dataset size).
      batch_size: images per generator and metric step over all devices of `mesh`.
      seed: chooses the real subset, the fake latents and the metrics' random draws.
      inception_weights_path: pt_inception-2015-12-05-6726825d.pth; None reads $PGGAN_INCEPTION_WEIGHTS.
        Without usable weights the Inception metrics are dropped and `note` says how to get them.
      cache_dir: root of the real-statistics and weights caches (None: $PGGAN_CACHE_DIR or ~/.cache/pggan).
      mesh: 1-D 'data' mesh for the generator (default: this process's devices).
      progress: show progress bars.

    Raises:
      EvaluationError: no metric can run, or impossible counts. MetricInputError: unknown metric.
    """

    def __init__(self, dataset: PreparedDataset, names: Sequence[str], *, num_images: int, batch_size: int = 64,
                 seed: int = 0, inception_weights_path: str | None = None,
                 cache_dir: str | os.PathLike | None = None, mesh: Mesh | None = None, progress: bool = False):
        if num_images < MIN_IMAGES or batch_size < 1:
            raise EvaluationError(f"num_images must be >= {MIN_IMAGES} and batch_size >= 1, got {num_images} "
                                  f"and {batch_size}")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else weights_files.cache_dir()
        self.suite, self.note = build_suite(names, inception_weights_path=inception_weights_path, seed=seed,
                                            cache_dir=self.cache_dir)
        self.dataset, self.seed, self.mesh, self.progress = dataset, seed, mesh, progress
        self.batch_size = batch_size
        self.num_images = min(num_images, dataset.num_examples)
        if self.num_images < num_images:
            logging.info("Evaluating with all %d images of dataset %s (fewer than the %d asked for).",
                         self.num_images, dataset.name, num_images)
        self._weights_digest = None
        if INCEPTION_METRICS & set(self.names):
            path = weights_files.resolve_weights_path(INCEPTION_WEIGHTS, inception_weights_path)
            self._weights_digest = weights_files.file_digest(path)
        self._real_stats: dict[int, dict[str, np.ndarray]] = {}

    @property
    def names(self) -> tuple[str, ...]:
        """The metrics that run (Inception metrics dropped when their weights are missing)."""
        return self.suite.names

    # ------------------------------------------------------------------------------ real statistics

    def cache_key(self, resolution: int) -> dict:
        """Everything the real statistics at `resolution` depend on (JSON-serialisable)."""
        return {"format": _CACHE_FORMAT, "dataset": dataset_identity(self.dataset), "level": resolution,
                "metric_resolution": metric_resolution(resolution), "num_images": self.num_images,
                "seed": self.seed, "statistics": sorted(_REAL_STATISTICS_OF & set(self.names)),
                "inception_weights": self._weights_digest}

    def cache_path(self, resolution: int) -> Path:
        """The .npz file of the real statistics at `resolution`."""
        key = json.dumps(self.cache_key(resolution), sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.cache_dir / "real_stats" / f"{self.dataset.name}-{resolution}px-{self.num_images}-{digest}.npz"

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
            logging.warning("Could not cache the real statistics in %s (%s); they will be computed again "
                            "next time. Set $PGGAN_CACHE_DIR to a writable directory.", path.parent, error)

    def real_batches(self, resolution: int) -> Iterator[np.ndarray]:
        """The real subset of level `resolution`: uint8 [b, S, S, C] batches, S = metric_resolution."""
        level = self.dataset.level(resolution)
        indices = real_subset(self.dataset.num_examples, self.num_images, self.seed)
        with tqdm(total=len(indices), unit="img", desc=f"reals {resolution}px", disable=not self.progress,
                  leave=False) as bar:
            for start in range(0, len(indices), self.batch_size):
                images, _ = level.read(indices[start:start + self.batch_size])
                bar.update(len(images))
                yield upscale_for_metrics(images)

    def real_statistics(self, resolution: int) -> dict[str, np.ndarray]:
        """The suite's real statistics at `resolution`: from memory, the disk cache, or computed and cached."""
        if resolution not in self._real_stats:
            key = json.dumps(self.cache_key(resolution), sort_keys=True)
            path = self.cache_path(resolution)
            stats = self._load_cached(path, key)
            if stats is None:
                stats = self.suite.real_statistics(self.real_batches(resolution))
                self._save_cache(path, key, stats)
            self._real_stats[resolution] = stats
        return self._real_stats[resolution]

    # ------------------------------------------------------------------------------------- fakes

    def fake_batches(self, generator: networks.Generator, resolution: int, alpha: float) -> Iterator[np.ndarray]:
        """The generator's images at (resolution, alpha): uint8 [b, S, S, C] batches, S = metric_resolution."""
        sampler = generation.Sampler(generator, resolution=resolution, alpha=alpha, batch_size=self.batch_size,
                                     mesh=self.mesh)
        latents = fake_latents(self.num_images, generator.spec.latent_size, self.seed)
        with tqdm(total=len(latents), unit="img", desc=f"fakes {resolution}px", disable=not self.progress,
                  leave=False) as bar:
            for batch in sampler.image_batches(latents):
                bar.update(len(batch))
                yield upscale_for_metrics(batch)

    def evaluate(self, generator: networks.Generator, resolution: int, alpha: float) -> dict[str, float]:
        """Scores of `generator` at (resolution, alpha), e.g. {'swd_16': ..., 'swd_avg': ..., 'fid': ...}."""
        real_stats = self.real_statistics(resolution)
        return self.suite.evaluate(self.fake_batches(generator, resolution, alpha), real_stats)


# ---------------------------------------------------------------------------------------- records


def evaluation_record(*, step: int, resolution: int, alpha: float, network: str, num_images: int,
                      dataset: str, scores: dict[str, float], seconds: float, source: str) -> dict:
    """One line of metrics.jsonl.

    Fields: time (UTC, ISO 8601), source ('training' or 'evaluate.py'), step (images shown, the
    checkpoint step), kimg, resolution and alpha (the generator's stage), metric_resolution (16 for 4
    and 8 px stages), network ('ema' or 'raw'), dataset, num_images, seconds (wall time of the
    evaluation), metrics ({name: float}).
    """
    return {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source": source, "step": int(step), "kimg": step / 1000, "resolution": int(resolution),
            "alpha": float(alpha), "metric_resolution": metric_resolution(resolution), "network": network,
            "dataset": dataset, "num_images": int(num_images), "seconds": round(float(seconds), 3),
            "metrics": {name: float(value) for name, value in scores.items()}}


def append_record(workdir: str, record: dict) -> str:
    """Appends `record` as one JSON line to WORKDIR/metrics.jsonl; returns the file's path."""
    path = os.path.join(workdir, METRICS_FILE)
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
    scores = evaluator.evaluate(generator, meta["resolution"], meta["alpha"])
    return evaluation_record(step=step, resolution=meta["resolution"], alpha=meta["alpha"], network=network,
                             num_images=evaluator.num_images, dataset=evaluator.dataset.name, scores=scores,
                             seconds=time.time() - start, source="evaluate.py")
