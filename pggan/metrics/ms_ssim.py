"""Multi-scale SSIM and the MS-SSIM diversity score, as PGGAN's `metrics/ms_ssim.py`.

Per pair of images in [0, 255]: at each of 5 scales, SSIM and contrast-structure (cs) with an 11x11
Gaussian window (sigma 1.5; shrunk to the image at small scales with sigma scaled alike), valid
convolution, biased local (co)variances, K1 0.01, K2 0.03; 2x2 box downsampling between scales.
Score = prod_{l<5} max(cs_l, 0)^w_l * max(ssim_5, 0)^w_5 with w = [0.0448, 0.2856, 0.3001, 0.2363,
0.1333]. The diversity score of a set is the mean MS-SSIM over consecutive pairs (2i, 2i + 1);
lower means more diverse.

Everything runs jitted in float32. Local statistics are computed on images centred by their own
mean (mathematically identical, much less float32 cancellation in E[x^2] - E[x]^2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pggan.metrics.device_batches import as_rgb_uint8, shard_batch
from pggan.metrics.errors import MetricInputError

SCALE_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FILTER_SIZE = 11
FILTER_SIGMA = 1.5
K1 = 0.01
K2 = 0.03
MAX_VALUE = 255.0


def gaussian_window_1d(size: int, sigma: float) -> np.ndarray:
    """1-D factor of MATLAB's `fspecial('gaussian')`: float64 [size], sums to 1.

    Even sizes sample at half-integer offsets, as the reference does.
    """
    offset = 0.5 if size % 2 == 0 else 0.0
    x = np.arange(size) - size // 2 + offset
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x: jax.Array, window: np.ndarray) -> jax.Array:
    """Separable valid filtering of [N, H, W, C] with the outer product of a 1-D window."""
    size = len(window)
    h, w = x.shape[1] - size + 1, x.shape[2] - size + 1
    rows = sum(x[:, k : k + h, :, :] * np.float32(window[k]) for k in range(size))
    return sum(rows[:, :, k : k + w, :] * np.float32(window[k]) for k in range(size))


def ssim_and_cs(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Single-scale SSIM and contrast-structure, each averaged per image over H, W and C.

    Args:
      x, y: float32 [N, H, W, C], values in [0, 255].

    Returns:
      (ssim [N], cs [N]) float32.
    """
    size = min(FILTER_SIZE, x.shape[1], x.shape[2])
    window = gaussian_window_1d(size, size * FILTER_SIGMA / FILTER_SIZE)
    x_mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    y_mean = jnp.mean(y, axis=(1, 2, 3), keepdims=True)
    xc, yc = x - x_mean, y - y_mean
    mu_xc, mu_yc = _filter_valid(xc, window), _filter_valid(yc, window)
    var_x = _filter_valid(xc * xc, window) - mu_xc * mu_xc
    var_y = _filter_valid(yc * yc, window) - mu_yc * mu_yc
    cov_xy = _filter_valid(xc * yc, window) - mu_xc * mu_yc
    mu_x, mu_y = mu_xc + x_mean, mu_yc + y_mean
    c1 = (K1 * MAX_VALUE) ** 2
    c2 = (K2 * MAX_VALUE) ** 2
    cs_map = (2.0 * cov_xy + c2) / (var_x + var_y + c2)
    ssim_map = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1) * cs_map
    return jnp.mean(ssim_map, axis=(1, 2, 3)), jnp.mean(cs_map, axis=(1, 2, 3))


def _box_downsample(x: jax.Array) -> jax.Array:
    """2x2 box average: [N, H, W, C] -> [N, H/2, W/2, C]."""
    n, h, w, c = x.shape
    return jnp.mean(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))


@jax.jit
def ms_ssim(x: jax.Array, y: jax.Array, floor: float = 0.0) -> jax.Array:
    """MS-SSIM of image pairs.

    Args:
      x, y: [N, H, W, C] (uint8 or float), values in [0, 255]; H and W divisible by 16.
      floor: lower bound of each scale's cs and SSIM before the powers: 0 as in the reference; a small
        positive floor keeps the gradient finite (the projection of real images optimises through it).

    Returns:
      float32 [N], 1 for identical images.
    """
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    weights = jnp.asarray(SCALE_WEIGHTS, jnp.float32)
    ssims, css = [], []
    for scale in range(len(SCALE_WEIGHTS)):
        if scale:
            x, y = _box_downsample(x), _box_downsample(y)
        ssim, cs = ssim_and_cs(x, y)
        ssims.append(ssim)
        css.append(cs)
    cs = jnp.maximum(jnp.stack(css[:-1]), floor)  # [4, N]
    return jnp.prod(cs ** weights[:-1, None], axis=0) * jnp.maximum(ssims[-1], floor) ** weights[-1]


def check_ms_ssim_size(height: int, width: int) -> None:
    """Raises MetricInputError unless H and W allow 5 scales of exact 2x2 downsampling."""
    factor = 2 ** (len(SCALE_WEIGHTS) - 1)
    if height % factor or width % factor:
        raise MetricInputError(f"MS-SSIM needs image sides divisible by {factor}, got {height}x{width}")


class MSSSIMDiversity:
    """Streaming MS-SSIM diversity: mean MS-SSIM over consecutive pairs (2i, 2i + 1) of a stream.

    Batches of any size may be added; an odd image left over is paired with the next batch's first.
    """

    def __init__(self):
        self._total = 0.0
        self._pairs = 0
        self._leftover: np.ndarray | None = None

    def add(self, images: np.ndarray) -> None:
        """Adds images: uint8 [B, H, W, 3] (or 1-channel), H and W divisible by 16."""
        images = as_rgb_uint8(images, "MS-SSIM images")
        check_ms_ssim_size(images.shape[1], images.shape[2])
        if self._leftover is not None:
            images = np.concatenate([self._leftover, images])
        num_pairs = images.shape[0] // 2
        self._leftover = images[2 * num_pairs :] if images.shape[0] % 2 else None
        if not num_pairs:
            return
        pairs = images[: 2 * num_pairs].reshape(num_pairs, 2, *images.shape[1:])
        first, num_valid = shard_batch(pairs[:, 0])
        second, _ = shard_batch(pairs[:, 1])
        scores = np.asarray(ms_ssim(first, second))[:num_valid]
        self._total += float(np.sum(scores, dtype=np.float64))
        self._pairs += num_pairs

    @property
    def num_images(self) -> int:
        """Images added so far (complete pairs and a leftover)."""
        return 2 * self._pairs + (0 if self._leftover is None else len(self._leftover))

    def result(self) -> float:
        """Mean MS-SSIM over all complete pairs added."""
        if not self._pairs:
            raise MetricInputError("MS-SSIM diversity needs at least 2 images")
        return self._total / self._pairs
