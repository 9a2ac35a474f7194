"""SWD: pyramid vs scipy's reflect-101 binomial pyramid, descriptors, normalisation, distance."""

import numpy as np
import pytest
import scipy.ndimage

from pggan.metrics.errors import MetricInputError
from pggan.metrics.swd import (
    SWDDescriptors,
    laplacian_pyramid,
    normalize_descriptors,
    random_directions,
    sample_patch_centres,
    sliced_wasserstein,
    sliced_wasserstein_jax,
    sliced_wasserstein_numpy,
    swd_resolutions,
    swd_scores,
)

_KERNEL = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0


def _reference_pyramid(images, levels):
    """Exact binomial Laplacian pyramid in float64 with scipy's 'mirror' (reflect-101) border."""

    def down(x):
        return scipy.ndimage.convolve(x, _KERNEL[None, :, :, None], mode="mirror")[:, ::2, ::2]

    def up(x):
        z = np.zeros((x.shape[0], 2 * x.shape[1], 2 * x.shape[2], x.shape[3]))
        z[:, ::2, ::2] = x
        return scipy.ndimage.convolve(z, 4 * _KERNEL[None, :, :, None], mode="mirror")

    gaussian = [images.astype(np.float64)]
    for _ in range(levels - 1):
        gaussian.append(down(gaussian[-1]))
    return [g - up(n) for g, n in zip(gaussian[:-1], gaussian[1:])] + [gaussian[-1]]


def _images(count, size, seed):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3)).astype(np.uint8)


def test_resolutions():
    assert swd_resolutions(128) == (128, 64, 32, 16)
    assert swd_resolutions(16) == (16,)
    for bad in (8, 48, 100):
        with pytest.raises(MetricInputError, match="power of two"):
            swd_resolutions(bad)


def test_pyramid_matches_exact_binomial_pyramid():
    images = _images(2, 64, 0)
    ours = laplacian_pyramid(images, 3)
    reference = _reference_pyramid(images, 3)
    assert [level.shape[1] for level in ours] == [64, 32, 16]
    for level, ref in zip(ours, reference):
        np.testing.assert_allclose(np.asarray(level), ref, rtol=0, atol=1e-4)


def test_descriptors_are_patches_in_channel_row_column_order():
    images = _images(3, 32, 1)
    rng = np.random.default_rng(2)
    centres = sample_patch_centres(rng, 3, (32, 16))
    assert all(c.min() >= 3 and c.max() < s - 3 for c, s in zip(centres, (32, 16)))
    collector = SWDDescriptors(32, rng)
    collector.add(images, centres)
    raw = [np.concatenate(chunks) for chunks in collector._chunks]
    for level, level_centres, descriptors in zip(_reference_pyramid(images, 2), centres, raw):
        expected = [
            level[n, y - 3 : y + 4, x - 3 : x + 4, :].transpose(2, 0, 1).ravel()
            for n in range(3)
            for y, x in level_centres[n]
        ]
        np.testing.assert_allclose(descriptors, np.array(expected), atol=1e-4)


def test_normalisation_is_per_channel_over_the_set():
    desc = np.random.default_rng(3).normal(5.0, 3.0, (500, 147)).astype(np.float32)
    normalised = normalize_descriptors(desc).reshape(500, 3, 49)
    np.testing.assert_allclose(normalised.mean(axis=(0, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(axis=(0, 2)), 1.0, atol=1e-5)
    by_channel = desc.reshape(500, 3, 49)
    np.testing.assert_allclose(
        normalised[:, 1], (by_channel[:, 1] - by_channel[:, 1].mean()) / by_channel[:, 1].std(), atol=1e-4
    )


def test_sliced_wasserstein_matches_numpy():
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, (300, 147)).astype(np.float32)
    b = rng.normal(0.2, 1.3, (300, 147)).astype(np.float32)
    directions = random_directions(rng)
    assert directions.shape == (4, 147, 128)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-6)
    expected = np.mean(
        [np.mean(np.abs(np.sort(a @ d, axis=0) - np.sort(b @ d, axis=0))) for d in directions.astype(np.float64)]
    )
    for distance in (sliced_wasserstein, sliced_wasserstein_jax, sliced_wasserstein_numpy):
        assert float(distance(a, b, directions)) == pytest.approx(expected, rel=1e-5)
        assert float(distance(a, a, directions)) == 0.0


def test_swd_of_a_set_with_itself_is_zero_and_streaming_matches_one_batch():
    images = _images(6, 32, 5)
    centres = sample_patch_centres(np.random.default_rng(6), 6, (32, 16))
    one = SWDDescriptors(32, np.random.default_rng(6))
    one.add(images, centres)
    streamed = SWDDescriptors(32, np.random.default_rng(6))
    streamed.add(images[:2])
    streamed.add(images[2:])  # 4 images, padded to 8 devices; same rng: the same centres
    first, second = one.finalize(), streamed.finalize()
    assert sorted(first) == [16, 32] and first[32].shape == (6 * 128, 147)
    for res in first:
        np.testing.assert_allclose(first[res], second[res], atol=1e-5)
    scores = swd_scores(first, first, np.random.default_rng(7))
    assert scores == {"swd_32": 0.0, "swd_16": 0.0, "swd_avg": 0.0}
    other = SWDDescriptors(32, np.random.default_rng(6))
    other.add(np.clip(images.astype(int) // 2 + 60, 0, 255).astype(np.uint8))
    different = swd_scores(first, other.finalize(), np.random.default_rng(7))
    assert different["swd_32"] > 0 and different["swd_16"] > 0
    assert different["swd_avg"] == pytest.approx((different["swd_32"] + different["swd_16"]) / 2)


def test_swd_input_errors():
    collector = SWDDescriptors(16, np.random.default_rng(0))
    with pytest.raises(MetricInputError, match="16x16"):
        collector.add(_images(2, 32, 0))
    with pytest.raises(MetricInputError, match="uint8"):
        collector.add(_images(2, 16, 0).astype(np.float32))
    collector.add(_images(2, 16, 0)[..., :1])  # grayscale is tiled to RGB
    bigger = SWDDescriptors(16, np.random.default_rng(1))
    bigger.add(_images(3, 16, 1))
    with pytest.raises(MetricInputError, match="equally many"):
        swd_scores(collector.finalize(), bigger.finalize(), np.random.default_rng(0))
