"""`MetricSuite`: every metric of one evaluation in a single pass over real and fake image batches.

    suite = MetricSuite(names=("swd", "ms_ssim", "fid", "kid", "is", "pr"), inception_weights=path)
    real_stats = suite.real_statistics(real_batches)   # cache with np.savez(file, **real_stats)
    scores = suite.evaluate(fake_batches, real_stats)  # {'swd_avg': ..., 'fid': ..., ...}

Batches are iterables of uint8 [B, H, W, 3] (or [B, H, W, 1]) NumPy arrays of square images, all of
one resolution R. Heavy work runs jitted with each batch sharded over all local devices.

Real statistics (all NumPy, saveable with `np.savez` and reloadable with `dict(np.load(file))`):
  resolution: int64 scalar R; num_images: int64 scalar.
  swd_<res>: float32 [num_images * 128, 147], normalised SWD descriptors per pyramid level (swd).
  inception_features: float32 [num_images, 2048] pool_3 features (kid, pr).
  inception_mean: float64 [2048]; inception_cov: float64 [2048, 2048] (fid).

Scores (flat floats): swd_<res> for each level and swd_avg (1e3 x SWD; fakes must be as many as the
reals), ms_ssim (mean over consecutive fake pairs), fid, kid_mean, kid_std, is_mean, is_std,
precision, recall.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from pggan.metrics.device_batches import as_rgb_uint8
from pggan.metrics.errors import MetricInputError
from pggan.metrics.inception_features import InceptionFeatureExtractor
from pggan.metrics.ms_ssim import MSSSIMDiversity, check_ms_ssim_size
from pggan.metrics.precision_recall import precision_recall
from pggan.metrics.statistics import (frechet_distance, inception_score, kernel_inception_distance,
                                      mean_and_covariance)
from pggan.metrics.swd import SWDDescriptors, swd_resolutions, swd_scores

ALL_METRICS = ("swd", "ms_ssim", "fid", "kid", "is", "pr")
INCEPTION_METRICS = frozenset({"fid", "kid", "is", "pr"})
MIN_IMAGES = 10  # the Inception Score's 10 splits need one image each
_REAL_FEATURES_FOR = frozenset({"kid", "pr"})


def parse_metric_names(value: str | Sequence[str]) -> tuple[str, ...]:
    """Metric names from 'swd,fid' or ('swd', 'fid') (items may hold commas too: ('swd,fid',)).

    Returns the names in order without duplicates ('' gives ()). Raises MetricInputError for an
    unknown name.
    """
    items = [value] if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(n.strip().lower() for item in items for n in str(item).split(",") if n.strip()))
    unknown = [n for n in names if n not in ALL_METRICS]
    if unknown:
        raise MetricInputError(f"unknown metrics {unknown}; choose among {','.join(ALL_METRICS)}")
    return names


class MetricSuite:
    """Computes the chosen metrics for fake images against cached real statistics."""

    def __init__(self, names: Sequence[str] = ALL_METRICS,
                 inception_weights: str | os.PathLike | None = None, seed: int = 0,
                 cache: str | os.PathLike | None = None,
                 inception: InceptionFeatureExtractor | None = None):
        """
        Args:
          names: metrics among 'swd', 'ms_ssim', 'fid', 'kid', 'is', 'pr'.
          inception_weights: pt_inception-2015-12-05-6726825d.pth; None reads
            $PGGAN_INCEPTION_WEIGHTS. Only needed for fid, kid, is and pr.
          seed: seeds SWD patches and directions and KID subsets (results are deterministic).
          cache: directory for the converted weights (default $PGGAN_CACHE_DIR or ~/.cache/pggan).
          inception: an already built feature extractor (then inception_weights is not read).

        Raises:
          MetricInputError: unknown metric name. WeightsFileError: Inception weights not available.
        """
        unknown = sorted(set(names) - set(ALL_METRICS))
        if unknown or not names:
            raise MetricInputError(f"unknown metrics {unknown}; choose among {list(ALL_METRICS)}")
        self.names = tuple(dict.fromkeys(names))
        self._seeds = np.random.SeedSequence(seed).spawn(4)  # real patches, fake patches, dirs, KID
        self._inception = None
        if INCEPTION_METRICS & set(self.names):
            self._inception = inception or InceptionFeatureExtractor.from_weights_file(
                inception_weights, cache)

    def _collect(self, batches: Iterable[np.ndarray], patch_seed: np.random.SeedSequence,
                 what: str) -> dict:
        """One pass over the batches: SWD descriptors, MS-SSIM pairs, Inception outputs."""
        swd = diversity = None
        resolution, count, taps = None, 0, []
        for batch in batches:
            batch = as_rgb_uint8(batch, what)
            if resolution is None:
                resolution = batch.shape[1]
                if batch.shape[2] != resolution:
                    raise MetricInputError(f"{what}: images must be square, got "
                                           f"{batch.shape[1]}x{batch.shape[2]}")
                if "swd" in self.names:
                    swd = SWDDescriptors(resolution, np.random.default_rng(patch_seed))
                if "ms_ssim" in self.names:
                    check_ms_ssim_size(resolution, resolution)
                    diversity = MSSSIMDiversity()
            elif batch.shape[1:3] != (resolution, resolution):
                raise MetricInputError(f"{what}: all images must be {resolution}x{resolution}, "
                                       f"got a batch of {batch.shape[1]}x{batch.shape[2]}")
            count += batch.shape[0]
            if swd is not None:
                swd.add(batch)
            if diversity is not None:
                diversity.add(batch)
            if self._inception is not None:
                out = self._inception(batch)
                taps.append((out["features_2048"], out["logits"]))
        if resolution is None:
            raise MetricInputError(f"{what}: no images")
        return {
            "resolution": resolution, "count": count, "swd": swd, "diversity": diversity,
            "features": np.concatenate([t[0] for t in taps]) if taps else None,
            "logits": np.concatenate([t[1] for t in taps]) if taps else None,
        }

    def real_statistics(self, batches: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
        """Everything the chosen metrics need from the real set (see the module docstring)."""
        seen = self._collect(batches, self._seeds[0], "real images")
        stats = {"resolution": np.int64(seen["resolution"]), "num_images": np.int64(seen["count"])}
        if seen["swd"] is not None:
            for res, desc in seen["swd"].finalize().items():
                stats[f"swd_{res}"] = desc
        if _REAL_FEATURES_FOR & set(self.names):
            stats["inception_features"] = seen["features"]
        if "fid" in self.names:
            stats["inception_mean"], stats["inception_cov"] = mean_and_covariance(seen["features"])
        return stats

    def _check_real_stats(self, real_stats: dict[str, np.ndarray], resolution: int) -> None:
        needed = ["resolution"]
        if "swd" in self.names:
            needed += [f"swd_{res}" for res in swd_resolutions(resolution)]
        if _REAL_FEATURES_FOR & set(self.names):
            needed.append("inception_features")
        if "fid" in self.names:
            needed += ["inception_mean", "inception_cov"]
        missing = [k for k in needed if k not in real_stats]
        if missing:
            raise MetricInputError(f"real statistics lack {missing}: recompute them with a suite "
                                   f"whose names include {list(self.names)}")
        if int(real_stats["resolution"]) != resolution:
            raise MetricInputError(f"fakes are {resolution}x{resolution} but the real statistics "
                                   f"are for {int(real_stats['resolution'])}x"
                                   f"{int(real_stats['resolution'])}")

    def evaluate(self, fake_batches: Iterable[np.ndarray],
                 real_stats: dict[str, np.ndarray]) -> dict[str, float]:
        """Scores of the fake images against `real_stats` (see the module docstring for names)."""
        seen = self._collect(fake_batches, self._seeds[1], "fake images")
        self._check_real_stats(real_stats, seen["resolution"])
        scores: dict[str, float] = {}
        if "swd" in self.names:
            real = {int(k[4:]): np.asarray(v) for k, v in real_stats.items() if k.startswith("swd_")}
            scores.update(swd_scores(real, seen["swd"].finalize(),
                                     np.random.default_rng(self._seeds[2])))
        if "ms_ssim" in self.names:
            scores["ms_ssim"] = seen["diversity"].result()
        if "fid" in self.names:
            mean, cov = mean_and_covariance(seen["features"])
            scores["fid"] = frechet_distance(real_stats["inception_mean"], real_stats["inception_cov"],
                                             mean, cov)
        if "kid" in self.names:
            scores["kid_mean"], scores["kid_std"] = kernel_inception_distance(
                real_stats["inception_features"], seen["features"],
                rng=np.random.default_rng(self._seeds[3]))
        if "is" in self.names:
            scores["is_mean"], scores["is_std"] = inception_score(seen["logits"])
        if "pr" in self.names:
            scores["precision"], scores["recall"] = precision_recall(
                real_stats["inception_features"], seen["features"])
        return scores
