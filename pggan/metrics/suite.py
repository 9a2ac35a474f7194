"""`MetricSuite`: every metric of one evaluation in a single pass over real and fake image batches.

    suite = MetricSuite(names=("swd", "ms_ssim", "fid", "kid", "is", "pr_inception", "pr_vgg16"),
                        protocol="tf1", inception_weights=path, vgg16_weights=path, num_images=10000)
    real_stats = suite.real_statistics(real_batches)   # cache with np.savez(file, **real_stats)
    scores = suite.evaluate(fake_batches, real_stats)  # {'swd_avg': ..., 'fid': ..., ...}

Batches are iterables of uint8 [B, H, W, 3] (or [B, H, W, 1]) NumPy arrays, or of sequences of uint8
[H_i, W_i, 3] images of different sizes. The feature metrics (fid, kid, is, pr_inception, pr_vgg16)
take every image, of any size (resized by the protocol); the pixel metrics (swd, ms_ssim) take the
first `num_images` of each set, which must be square and all of one size (swd: a power of two >= 16;
ms_ssim: sides divisible by 16). Heavy work runs jitted with each batch sharded over all local devices.

Counts: reals and fakes may differ in number (FID: 50,000 fakes against all reals, as StyleGAN
reports). SWD compares equally many images: the fakes' first n, n = the reals' SWD count.

Real statistics (all NumPy, saveable with `np.savez` and reloadable with `dict(np.load(file))`):
  num_images: int64 scalar, the reals seen; resolution: int64 scalar, their side (swd).
  swd_<res>: float32 [n * 128, 147], normalised SWD descriptors per pyramid level (swd).
  protocol: str, the Inception protocol (fid, kid, pr_inception).
  inception_mean: float64 [2048]; inception_cov: float64 [2048, 2048] (fid).
  inception_features: float32 [num_images, 2048] pool_3 features (kid, pr_inception).
  vgg16_features: float32 [num_images, 4096] fc2 features (pr_vgg16).

Scores (flat floats): swd_<res> for each level and swd_avg (1e3 x SWD), ms_ssim (mean over
consecutive fake pairs), fid, kid_mean, kid_std, is_mean, is_std, precision_inception,
recall_inception, precision_vgg16, recall_vgg16.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from pggan.metrics.errors import MetricInputError
from pggan.metrics.feature_extraction import InceptionFeatureExtractor, VGG16FeatureExtractor
from pggan.metrics.ms_ssim import MSSSIMDiversity, check_ms_ssim_size
from pggan.metrics.precision_recall import precision_recall
from pggan.metrics.protocols import DEFAULT_PROTOCOL, VGG16_PROTOCOL, inception_protocol
from pggan.metrics.statistics import FeatureMoments, frechet_distance, inception_score, kernel_inception_distance
from pggan.metrics.swd import PATCHES_PER_IMAGE, SWDDescriptors, swd_resolutions, swd_scores

ALL_METRICS = ("swd", "ms_ssim", "fid", "kid", "is", "pr_inception", "pr_vgg16")
INCEPTION_METRICS = frozenset({"fid", "kid", "is", "pr_inception"})
VGG16_METRICS = frozenset({"pr_vgg16"})
PIXEL_METRICS = frozenset({"swd", "ms_ssim"})
REAL_METRICS = frozenset({"swd", "fid", "kid", "pr_inception", "pr_vgg16"})  # those that compare with reals
MIN_IMAGES = 10  # the Inception Score's 10 splits need one image each
_REAL_INCEPTION_FEATURES_FOR = frozenset({"kid", "pr_inception"})


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


def _batch_images(batch) -> tuple[np.ndarray | list[np.ndarray], int]:
    """A batch as given (array [B, H, W, C] or list of [H, W, C]) and its image count."""
    if isinstance(batch, np.ndarray) and batch.ndim == 4:
        return batch, batch.shape[0]
    batch = list(batch)
    return batch, len(batch)


def _uniform(batch, what: str) -> np.ndarray:
    """The batch as one uint8 [B, S, S, C] array of square images; MetricInputError otherwise."""
    shapes = {np.shape(image) for image in batch}
    if len(shapes) != 1 or next(iter(shapes))[0] != next(iter(shapes))[1]:
        sizes = ", ".join(sorted(f"{s[0]}x{s[1]}" for s in shapes))
        raise MetricInputError(
            f"{what}: swd and ms_ssim need square images all of one size, got {sizes}; "
            "resize them, or choose feature metrics only (fid,kid,is,pr_inception,pr_vgg16)"
        )
    return np.asarray(batch) if not isinstance(batch, np.ndarray) else batch


class _Collected:
    """What one pass over a set of images produced."""

    def __init__(self):
        self.count = 0
        self.resolution = None
        self.swd: SWDDescriptors | None = None
        self.diversity: MSSSIMDiversity | None = None
        self.moments = FeatureMoments()
        self.inception_features: list[np.ndarray] = []
        self.logits: list[np.ndarray] = []
        self.vgg16_features: list[np.ndarray] = []


class MetricSuite:
    """Computes the chosen metrics for fake images against cached real statistics."""

    def __init__(
        self,
        names: Sequence[str] = ALL_METRICS,
        inception_weights: str | os.PathLike | None = None,
        seed: int = 0,
        cache: str | os.PathLike | None = None,
        inception: InceptionFeatureExtractor | None = None,
        *,
        protocol: str = DEFAULT_PROTOCOL,
        vgg16_weights: str | os.PathLike | None = None,
        vgg16: VGG16FeatureExtractor | None = None,
        num_images: int | None = None,
    ):
        """
        Args:
          names: metrics among ALL_METRICS.
          inception_weights: pt_inception-2015-12-05-6726825d.pth; None reads $PGGAN_INCEPTION_WEIGHTS.
            Only needed for fid, kid, is and pr_inception.
          seed: seeds SWD patches and directions and KID subsets (results are deterministic).
          cache: directory for the converted weights (default $PGGAN_CACHE_DIR or ~/.cache/pggan).
          inception: an already built Inception extractor (then inception_weights and protocol are not read).
          protocol: the Inception preprocessing, a name of `protocols.PROTOCOLS`.
          vgg16_weights: vgg16-397923af.pth; None reads $PGGAN_VGG16_WEIGHTS. Only needed for pr_vgg16.
          vgg16: an already built VGG16 extractor (then vgg16_weights is not read).
          num_images: images per set for swd and ms_ssim (the first ones); None = all.

        Raises:
          MetricInputError: unknown metric or protocol. WeightsFileError: weights not available.
        """
        unknown = sorted(set(names) - set(ALL_METRICS))
        if unknown or not names:
            raise MetricInputError(f"unknown metrics {unknown}; choose among {list(ALL_METRICS)}")
        self.names = tuple(dict.fromkeys(names))
        self.num_images = num_images
        self._seeds = np.random.SeedSequence(seed).spawn(4)  # real patches, fake patches, dirs, KID
        self._inception = self._vgg16 = None
        if INCEPTION_METRICS & set(self.names):
            self._inception = inception or InceptionFeatureExtractor.from_weights_file(
                inception_weights, cache, inception_protocol(protocol).name
            )
        if VGG16_METRICS & set(self.names):
            self._vgg16 = vgg16 or VGG16FeatureExtractor.from_weights_file(vgg16_weights, cache)

    @property
    def protocol(self) -> str | None:
        """Name of the Inception protocol in use (None without Inception metrics)."""
        return self._inception.protocol.name if self._inception else None

    def _pixel_metrics(self, seen: _Collected, batch, what: str, patch_seed, quota: int | None) -> None:
        """Feeds the first `quota` images (None: all) to SWD and MS-SSIM."""
        taken = 0
        if seen.swd is not None:
            taken = seen.swd.num_descriptors // PATCHES_PER_IMAGE
        elif seen.diversity is not None:
            taken = seen.diversity.num_images
        if quota is not None:
            batch = batch[: max(quota - taken, 0)]
        if not len(batch):
            return
        images = _uniform(batch, what)
        if seen.resolution is None:
            seen.resolution = images.shape[1]
            if "swd" in self.names:
                seen.swd = SWDDescriptors(seen.resolution, np.random.default_rng(patch_seed))
            if "ms_ssim" in self.names:
                check_ms_ssim_size(seen.resolution, seen.resolution)
                seen.diversity = MSSSIMDiversity()
        elif images.shape[1:3] != (seen.resolution,) * 2:
            raise MetricInputError(
                f"{what}: swd and ms_ssim need images all of one size: "
                f"{seen.resolution}x{seen.resolution}, then {images.shape[1]}x{images.shape[2]}"
            )
        for collector in (seen.swd, seen.diversity):
            if collector is not None:
                collector.add(images)

    def _collect(
        self,
        batches: Iterable,
        patch_seed: np.random.SeedSequence,
        what: str,
        *,
        pixel_quota: int | None,
        keep_inception_features: bool,
        keep_logits: bool,
    ) -> _Collected:
        """One pass over the batches: SWD descriptors, MS-SSIM pairs, Inception and VGG16 outputs."""
        seen = _Collected()
        pixel = PIXEL_METRICS & set(self.names)
        for batch in batches:
            batch, count = _batch_images(batch)
            if not count:
                continue
            seen.count += count
            if pixel:
                self._pixel_metrics(seen, batch, what, patch_seed, pixel_quota)
            if self._inception is not None:
                taps = self._inception(batch)
                seen.moments.add(taps["features_2048"])
                if keep_inception_features:
                    seen.inception_features.append(taps["features_2048"])
                if keep_logits:
                    seen.logits.append(taps["logits"])
            if self._vgg16 is not None:
                seen.vgg16_features.append(self._vgg16(batch)["fc2_relu"])
        if not seen.count:
            raise MetricInputError(f"{what}: no images")
        return seen

    def real_statistics(self, batches: Iterable) -> dict[str, np.ndarray]:
        """Everything the chosen metrics need from the real set (see the module docstring)."""
        seen = self._collect(
            batches,
            self._seeds[0],
            "real images",
            pixel_quota=self.num_images,
            keep_inception_features=bool(_REAL_INCEPTION_FEATURES_FOR & set(self.names)),
            keep_logits=False,
        )
        stats = {"num_images": np.int64(seen.count)}
        if seen.swd is not None:
            stats["resolution"] = np.int64(seen.resolution)
            for res, desc in seen.swd.finalize().items():
                stats[f"swd_{res}"] = desc
        if self._inception is not None and REAL_METRICS & INCEPTION_METRICS & set(self.names):
            stats["protocol"] = np.asarray(self.protocol)
        if _REAL_INCEPTION_FEATURES_FOR & set(self.names):
            stats["inception_features"] = np.concatenate(seen.inception_features)
        if "fid" in self.names:
            stats["inception_mean"], stats["inception_cov"] = seen.moments.result()
        if "pr_vgg16" in self.names:
            stats["vgg16_features"] = np.concatenate(seen.vgg16_features)
        return stats

    def required_real_statistics(self) -> list[str]:
        """The entries of real statistics that evaluate() reads for the chosen metrics (swd levels aside)."""
        needed = []
        if "swd" in self.names:
            needed.append("resolution")
        if REAL_METRICS & INCEPTION_METRICS & set(self.names):
            needed.append("protocol")
        if _REAL_INCEPTION_FEATURES_FOR & set(self.names):
            needed.append("inception_features")
        if "fid" in self.names:
            needed += ["inception_mean", "inception_cov"]
        if "pr_vgg16" in self.names:
            needed.append("vgg16_features")
        return needed

    def _check_real_stats(self, real_stats: dict[str, np.ndarray]) -> None:
        needed = self.required_real_statistics()
        if "swd" in self.names and "resolution" in real_stats:
            needed += [f"swd_{res}" for res in swd_resolutions(int(real_stats["resolution"]))]
        missing = [k for k in needed if k not in real_stats]
        if missing:
            raise MetricInputError(
                f"real statistics lack {missing}: recompute them with a suite whose names include {list(self.names)}"
            )
        if "protocol" in needed and str(real_stats["protocol"]) != self.protocol:
            raise MetricInputError(
                f"the real statistics were made with protocol {real_stats['protocol']}, "
                f"the fakes use {self.protocol}; recompute them"
            )

    def swd_count(self, real_stats: dict[str, np.ndarray]) -> int:
        """Images per set that SWD compares (the reals' count in `real_stats`)."""
        res = int(real_stats["resolution"])
        return int(real_stats[f"swd_{res}"].shape[0]) // PATCHES_PER_IMAGE

    def evaluate(self, fake_batches: Iterable, real_stats: dict[str, np.ndarray]) -> dict[str, float]:
        """Scores of the fake images against `real_stats` (see the module docstring for names)."""
        self._check_real_stats(real_stats)
        quota = self.swd_count(real_stats) if "swd" in self.names else self.num_images
        seen = self._collect(
            fake_batches,
            self._seeds[1],
            "fake images",
            pixel_quota=quota,
            keep_inception_features=bool(_REAL_INCEPTION_FEATURES_FOR & set(self.names)),
            keep_logits="is" in self.names,
        )
        scores: dict[str, float] = {}
        if "swd" in self.names:
            if seen.resolution != int(real_stats["resolution"]):
                raise MetricInputError(
                    f"fakes are {seen.resolution}x{seen.resolution} but the real statistics "
                    f"are for {int(real_stats['resolution'])}x{int(real_stats['resolution'])}"
                )
            real = {int(k[4:]): np.asarray(v) for k, v in real_stats.items() if k.startswith("swd_")}
            scores.update(swd_scores(real, seen.swd.finalize(), np.random.default_rng(self._seeds[2])))
        if "ms_ssim" in self.names:
            scores["ms_ssim"] = seen.diversity.result()
        if "fid" in self.names:
            mean, cov = seen.moments.result()
            scores["fid"] = frechet_distance(real_stats["inception_mean"], real_stats["inception_cov"], mean, cov)
        if "kid" in self.names or "pr_inception" in self.names:
            fake_features = np.concatenate(seen.inception_features)
        if "kid" in self.names:
            scores["kid_mean"], scores["kid_std"] = kernel_inception_distance(
                real_stats["inception_features"], fake_features, rng=np.random.default_rng(self._seeds[3])
            )
        if "is" in self.names:
            scores["is_mean"], scores["is_std"] = inception_score(np.concatenate(seen.logits))
        if "pr_inception" in self.names:
            scores["precision_inception"], scores["recall_inception"] = precision_recall(
                real_stats["inception_features"], fake_features
            )
        if "pr_vgg16" in self.names:
            scores["precision_vgg16"], scores["recall_vgg16"] = precision_recall(
                real_stats["vgg16_features"], np.concatenate(seen.vgg16_features)
            )
        return scores

    def details(self, real_stats: dict[str, np.ndarray], num_fakes: int) -> dict[str, dict]:
        """Per metric, what its figure compares: {'fid': {'protocol': 'tf1', 'num_reals': N, 'num_fakes': M}, ...}.

        num_fakes: the fakes evaluated (all of them; the pixel metrics take their first ones).
        num_reals is None when the real statistics do not record their count (another tool's file).
        """
        num_reals = int(real_stats["num_images"]) if "num_images" in real_stats else None
        details: dict[str, dict] = {}
        for name in self.names:
            if name == "swd":
                n = self.swd_count(real_stats)
                details[name] = {"num_reals": n, "num_fakes": n}
            elif name == "ms_ssim":
                details[name] = {"num_fakes": min(num_fakes, self.num_images or num_fakes)}
            else:
                protocol = VGG16_PROTOCOL.name if name in VGG16_METRICS else self.protocol
                details[name] = {"protocol": protocol, "num_fakes": num_fakes}
                if name in REAL_METRICS:
                    details[name]["num_reals"] = num_reals
        return details
