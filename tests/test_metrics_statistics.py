"""Frechet distance, KID, IS and precision/recall against independent computations."""

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.special
import scipy.stats

from pggan.metrics.errors import MetricInputError
from pggan.metrics.precision_recall import precision_recall
from pggan.metrics.statistics import (
    FeatureMoments,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    kid_subset_indices,
    mean_and_covariance,
)
from tests.metrics_support import random_features

GOLDEN = Path(__file__).parent / "golden"


def test_frechet_distance_matches_scipy_sqrtm_formula():
    mu1, cov1 = mean_and_covariance(random_features(300, 64, 0.0, seed=1))
    mu2, cov2 = mean_and_covariance(random_features(250, 64, 0.5, seed=2))
    root = scipy.linalg.sqrtm(cov1 @ cov2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(root)
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_invariants_and_torchmetrics_golden():
    golden = np.load(GOLDEN / "kid_fid_torchmetrics.npz")
    real, fake = random_features(40, 2048, 0.0, seed=1), random_features(30, 2048, 0.3, seed=2)
    mu1, cov1 = mean_and_covariance(real)
    mu2, cov2 = mean_and_covariance(fake)
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(float(golden["fid"]), rel=1e-6)
    mu1, cov1 = mean_and_covariance(random_features(300, 64, 0.0, seed=1))
    assert abs(frechet_distance(mu1, cov1, mu1, cov1)) < 1e-9 * np.trace(cov1)
    shift = np.full_like(mu1, 0.25)
    assert frechet_distance(mu1, cov1, mu1 + shift, cov1) == pytest.approx(np.sum(shift**2), rel=1e-6)
    with pytest.raises(MetricInputError, match="shapes"):
        frechet_distance(mu1, cov1, mu2[:10], cov2)


def test_kid_matches_torchmetrics_per_subset():
    golden = np.load(GOLDEN / "kid_fid_torchmetrics.npz")
    real, fake = random_features(40, 2048, 0.0, seed=1), random_features(30, 2048, 0.3, seed=2)
    expected = golden["kid_per_subset"]
    mean, std = kernel_inception_distance(real, fake, subsets=zip(golden["real_idx"], golden["fake_idx"]))
    assert mean == pytest.approx(expected.mean(), rel=1e-10)
    assert std == pytest.approx(expected.std(), rel=1e-8)
    assert mean > 0


def test_kid_subsets_are_drawn_without_replacement_and_clipped():
    subsets = kid_subset_indices(np.random.default_rng(0), num_real=50, num_fake=30)
    assert len(subsets) == 100
    for real_idx, fake_idx in subsets:
        assert len(real_idx) == len(fake_idx) == 30
        assert len(set(real_idx)) == 30 and real_idx.max() < 50 and len(set(fake_idx)) == 30
    same = random_features(60, 16, 0.0, seed=3)
    mean, _ = kernel_inception_distance(same[:30], same[30:], rng=np.random.default_rng(1))
    assert abs(mean) < 0.05  # same distribution: unbiased estimate near 0 (may be negative)


def _openai_inception_score(logits, splits):
    p = scipy.special.softmax(logits.astype(np.float64), axis=1)
    scores = []
    for part in np.array_split(p, splits):
        kl = scipy.stats.entropy(part.T, part.mean(axis=0)[:, None])
        scores.append(np.exp(kl.mean()))
    return np.mean(scores), np.std(scores)


def test_inception_score_matches_openai_formula_and_bounds():
    logits = np.random.default_rng(4).normal(0, 3, (100, 1008))
    mean, std = inception_score(logits)
    expected_mean, expected_std = _openai_inception_score(logits, 10)
    assert mean == pytest.approx(expected_mean, rel=1e-10)
    assert std == pytest.approx(expected_std, rel=1e-8)
    assert inception_score(np.zeros((20, 1008)))[0] == pytest.approx(1.0)  # no information: 1
    confident = np.full((1008 * 10, 1008), -1e4)
    confident[np.arange(1008 * 10), np.arange(1008 * 10) % 1008] = 1e4
    assert inception_score(confident)[0] == pytest.approx(1008.0)  # all classes, certain: 1008
    with pytest.raises(MetricInputError, match="at least 10"):
        inception_score(logits[:5])


def test_precision_recall_matches_brute_force():
    real = random_features(120, 32, 0.0, seed=5).astype(np.float32)
    fake = random_features(90, 32, 0.4, seed=6).astype(np.float32)

    def radii(x):
        return np.sort(scipy.spatial.distance.cdist(x, x), axis=1)[:, 3]  # index 0 is the point itself

    def inside(queries, centres):
        d = scipy.spatial.distance.cdist(queries, centres)
        return np.mean(np.any(d <= radii(centres)[None, :], axis=1))

    precision, recall = precision_recall(real, fake)
    assert precision == pytest.approx(inside(fake, real))
    assert recall == pytest.approx(inside(real, fake))
    assert 0 < precision < 1 and 0 < recall < 1
    assert precision_recall(real, real) == (1.0, 1.0)


def test_precision_counts_the_boundary_as_inside():
    real = np.arange(5, dtype=np.float32)[:, None]  # radii (k=3): 3, 2, 2, 2, 3
    fake = np.array([[-3.0], [-3.5], [7.0], [10.0]], np.float32)  # -3 and 7 lie exactly on a boundary
    precision, _ = precision_recall(real, fake)
    assert precision == 0.5
    with pytest.raises(MetricInputError, match="more than k=3"):
        precision_recall(real[:3], fake)


def test_streaming_moments_equal_numpy_whatever_the_batches():
    features = random_features(50, 16, 3.0, seed=4) + 100.0  # far from zero-mean: no cancellation allowed
    moments = FeatureMoments()
    for start in (0, 1, 8, 30):
        moments.add(features[start : {0: 1, 1: 8, 8: 30, 30: 50}[start]])
    mean, cov = moments.result()
    np.testing.assert_allclose(mean, features.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(cov, np.cov(features, rowvar=False), rtol=1e-9, atol=1e-12)
