"""MS-SSIM: single scale vs scikit-image, multi-scale vs a float64 transcription, the diversity stream."""

import numpy as np
import pytest
import scipy.signal
from skimage.metrics import structural_similarity

from pggan.metrics.errors import MetricInputError
from pggan.metrics.ms_ssim import MSSSIMDiversity, ms_ssim, ssim_and_cs

WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


def _pair(size, noise, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (1, size, size, 3)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, noise, a.shape), 0, 255).astype(np.uint8)
    return a, b


def _reference_ms_ssim(x, y):
    """MS-SSIM of one pair [H, W, C] in float64, written from the paper's recipe."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssims, css = [], []
    for scale in range(5):
        if scale:
            x, y = [(v[0::2, 0::2] + v[1::2, 0::2] + v[0::2, 1::2] + v[1::2, 1::2]) / 4 for v in (x, y)]
        size = min(11, x.shape[0], x.shape[1])
        sigma = size * 1.5 / 11
        r = np.arange(size) - size // 2 + (0.5 if size % 2 == 0 else 0.0)
        window = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
        window /= window.sum()

        def filt(v, window=window):
            return np.stack(
                [scipy.signal.convolve2d(v[..., c], window, mode="valid") for c in range(v.shape[-1])], axis=-1
            )

        mx, my = filt(x), filt(y)
        vx, vy, cxy = filt(x * x) - mx * mx, filt(y * y) - my * my, filt(x * y) - mx * my
        cs = (2 * cxy + c2) / (vx + vy + c2)
        ssims.append(np.mean((2 * mx * my + c1) / (mx * mx + my * my + c1) * cs))
        css.append(np.mean(cs))
    return np.prod(np.maximum(css[:-1], 0) ** WEIGHTS[:-1]) * max(ssims[-1], 0) ** WEIGHTS[-1]


@pytest.mark.parametrize("noise", [10.0, 60.0])
def test_single_scale_ssim_matches_scikit_image(noise):
    a, b = _pair(48, noise, 0)
    ssim, _ = ssim_and_cs(a.astype(np.float32), b.astype(np.float32))
    expected = structural_similarity(
        a[0].astype(np.float64),
        b[0].astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1,
    )
    assert float(ssim[0]) == pytest.approx(expected, abs=1e-6)


def test_ms_ssim_matches_float64_transcription_and_is_one_for_identical_images():
    a, b = _pair(32, 30.0, 1)  # 32 -> 2x2 at the last scale: the window shrinks to an even size
    pairs = np.concatenate([a, a]), np.concatenate([b, a])
    scores = np.asarray(ms_ssim(*pairs))
    assert scores[0] == pytest.approx(_reference_ms_ssim(a[0], b[0]), abs=1e-5)
    assert 0 < scores[0] < 1
    assert scores[1] == pytest.approx(1.0, abs=1e-6)


def test_diversity_stream_pairs_consecutive_images_across_batches():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (7, 16, 16, 3)).astype(np.uint8)
    images[1] = images[0]  # pair (0, 1) identical -> 1
    expected = np.mean([_reference_ms_ssim(images[i], images[i + 1]) for i in (0, 2, 4)])
    stream = MSSSIMDiversity()
    for batch in (images[:3], images[3:4], images[4:]):  # odd sizes: leftovers carried over
        stream.add(batch)
    assert stream.result() == pytest.approx(expected, abs=1e-5)
    assert _reference_ms_ssim(images[0], images[1]) == pytest.approx(1.0)


def test_ms_ssim_input_errors():
    stream = MSSSIMDiversity()
    with pytest.raises(MetricInputError, match="divisible by 16"):
        stream.add(np.zeros((2, 24, 24, 3), np.uint8))
    stream.add(np.zeros((1, 16, 16, 1), np.uint8))
    with pytest.raises(MetricInputError, match="at least 2 images"):
        stream.result()
