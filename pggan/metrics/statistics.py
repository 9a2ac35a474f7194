"""Host statistics on Inception outputs, in float64 NumPy: Frechet distance, KID, Inception Score.

Features are `pool_3` activations, float [N, 2048]; logits are the bias-free [N, 1008] outputs.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from pggan.metrics.errors import MetricInputError

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
IS_SPLITS = 10


def _as_features(features: np.ndarray, what: str, min_count: int = 2) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < min_count:
        raise MetricInputError(f"{what}: expected at least {min_count} feature rows [N, D], got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise MetricInputError(f"{what}: features contain NaN or infinity")
    return features


class FeatureMoments:
    """Streaming mean and unbiased covariance of feature rows, in float64, without keeping the rows.

    Sums of `x - shift` and of their outer products, with `shift` the first batch's mean, so that
    `(S - n m m^T) / (n - 1)` does not cancel (features are far from zero-mean). Memory: D^2 float64.
    """

    def __init__(self):
        self.count = 0
        self._shift = self._sum = self._outer = None

    def add(self, features: np.ndarray) -> None:
        """Adds rows: float [B, D] (B >= 1)."""
        x = np.asarray(features, np.float64)
        if self._shift is None:
            self._shift = x.mean(axis=0)
            self._sum = np.zeros_like(self._shift)
            self._outer = np.zeros((x.shape[1], x.shape[1]))
        x = x - self._shift
        self.count += x.shape[0]
        self._sum += x.sum(axis=0)
        self._outer += x.T @ x

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean float64 [D], unbiased covariance float64 [D, D]); needs at least 2 rows."""
        if self.count < 2:
            raise MetricInputError(f"mean/covariance: expected at least 2 feature rows, got {self.count}")
        shifted_mean = self._sum / self.count
        cov = (self._outer - self.count * np.outer(shifted_mean, shifted_mean)) / (self.count - 1)
        if not (np.all(np.isfinite(cov)) and np.all(np.isfinite(shifted_mean))):
            raise MetricInputError("mean/covariance: features contain NaN or infinity")
        return self._shift + shifted_mean, (cov + cov.T) / 2


def mean_and_covariance(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean float64 [D] and unbiased covariance float64 [D, D] of features [N, D] (N >= 2)."""
    moments = FeatureMoments()
    moments.add(_as_features(features, "mean/covariance"))
    return moments.result()


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via eigh (negative eigenvalues clipped)."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Frechet distance between Gaussians N(mu1, cov1) and N(mu2, cov2), float64.

    `|mu1 - mu2|^2 + Tr cov1 + Tr cov2 - 2 Tr sqrtm(cov1 cov2)`, with the trace term computed
    stably as `sum sqrt(clip(eigvalsh(r cov2 r), 0))` where `r = sqrtm(cov1)` (symmetric, via eigh).

    Args:
      mu1, mu2: float [D]; cov1, cov2: float [D, D] symmetric PSD.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise MetricInputError(
            f"Frechet distance: shapes {mu1.shape}, {cov1.shape}, {mu2.shape}, {cov2.shape} do not fit [D], [D, D]"
        )
    root = _psd_sqrt(cov1)
    middle = root @ cov2 @ root
    trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)))
    return float(np.sum(np.square(mu1 - mu2)) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)


def polynomial_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the KID kernel k(a, b) = (a.b / D + 1)^3; x [m, D], y [n, D]."""
    d = x.shape[1]
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    m, n = x.shape[0], y.shape[0]
    return float(
        (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
        + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
        - 2.0 * k_xy.mean()
    )


def kid_subset_indices(
    rng: np.random.Generator,
    num_real: int,
    num_fake: int,
    num_subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subsets for KID: per subset, indices drawn without replacement from each set independently.

    The subset size is clipped to min(subset_size, num_real, num_fake).
    """
    size = min(subset_size, num_real, num_fake)
    return [
        (rng.choice(num_real, size, replace=False), rng.choice(num_fake, size, replace=False))
        for _ in range(num_subsets)
    ]


def kernel_inception_distance(
    real: np.ndarray,
    fake: np.ndarray,
    subsets: Iterable[tuple[np.ndarray, np.ndarray]] | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[float, float]:
    """KID: mean and std (ddof 0) of the unbiased polynomial MMD^2 over subsets; may be negative.

    Args:
      real, fake: features [N, D] and [M, D] (N, M >= 2).
      subsets: (real indices, fake indices) pairs; default `kid_subset_indices(rng, N, M)`
        (100 subsets of min(1000, N, M)).
      rng: source of the default subsets (default: np.random.default_rng(0)).
    """
    real = _as_features(real, "KID reals")
    fake = _as_features(fake, "KID fakes")
    if real.shape[1] != fake.shape[1]:
        raise MetricInputError(f"KID: feature sizes differ ({real.shape[1]} vs {fake.shape[1]})")
    if subsets is None:
        subsets = kid_subset_indices(rng or np.random.default_rng(0), len(real), len(fake))
    scores = np.array([polynomial_mmd2_unbiased(real[r], fake[f]) for r, f in subsets])
    return float(scores.mean()), float(scores.std())


def inception_score(logits: np.ndarray, splits: int = IS_SPLITS) -> tuple[float, float]:
    """Inception Score: mean and std (ddof 0) over `splits` contiguous, unshuffled splits.

    Per split: exp(mean_i KL(p(y|x_i) || p(y))), p(y|x) = softmax over all classes of the logits.

    Args:
      logits: float [N, C] bias-free Inception logits (N >= splits). Result in [1, C].
    """
    logits = _as_features(logits, "Inception Score logits", min_count=splits)
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.sum(np.exp(log_p), axis=1, keepdims=True))
    p = np.exp(log_p)
    n = logits.shape[0]
    scores = []
    for i in range(splits):
        part_p, part_log_p = p[i * n // splits : (i + 1) * n // splits], log_p[i * n // splits : (i + 1) * n // splits]
        log_marginal = np.log(np.maximum(part_p.mean(axis=0, keepdims=True), np.finfo(np.float64).tiny))
        kl = np.sum(np.where(part_p > 0, part_p * (part_log_p - log_marginal), 0.0), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
