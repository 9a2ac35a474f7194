"""The image resizes of the published FID tools, as separable resampling taps applied on the device.

Each resize is separable: along one axis, output pixel i is `sum_k weights[i, k] * input[indices[i, k]]`.
The taps are computed once on the host (NumPy) from the reference code's documented sampling rules:

  tf1_bilinear    TF1 `tf.image.resize_bilinear` with default flags (align_corners=False,
                  half_pixel_centers=False, no antialias): `src = dst * in / out` in float32,
                  `i0 = floor(src)`, `i1 = min(i0 + 1, in - 1)`, weights (1 - (src - i0), src - i0).
                  The TF FID code, StyleGAN/StyleGAN2-ADA's Inception and VGG16, torch-fidelity.
  torch_bilinear  PyTorch `F.interpolate(mode='bilinear', align_corners=False)` without antialias:
                  `src = max((dst + 0.5) * in / out - 0.5, 0)` in float32, then as above (pytorch-fid).
  pil_bicubic     Pillow `Image.resize(resample=BICUBIC)` on float ('F') images: the cubic kernel with
                  a = -0.5 and support 2, stretched by `max(in / out, 1)` when shrinking (antialias),
                  centred at `(dst + 0.5) * in / out`, taps normalised to sum 1 (clean-fid's 'clean').

`resample` applies the taps along the width first, then along the height (the order of TF1, PyTorch
and Pillow), in float32.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

RESIZE_METHODS = ("tf1_bilinear", "torch_bilinear", "pil_bicubic")
_BICUBIC_A = -0.5
_BICUBIC_SUPPORT = 2.0


def _linear_taps(lower: np.ndarray, src: np.ndarray, in_size: int) -> tuple[np.ndarray, np.ndarray]:
    upper = np.minimum(lower + 1, in_size - 1)
    lerp = (src - lower.astype(np.float32)).astype(np.float32)
    return (
        np.stack([lower, upper], axis=1).astype(np.int32),
        np.stack([np.float32(1) - lerp, lerp], axis=1).astype(np.float32),
    )


def tf1_bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """TF1 resize_bilinear sampling: (indices int32 [out, 2], weights float32 [out, 2])."""
    src = np.arange(out_size, dtype=np.float32) * (np.float32(in_size) / np.float32(out_size))
    return _linear_taps(np.floor(src).astype(np.int64), src, in_size)


def torch_bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch bilinear (align_corners=False, no antialias): (indices int32 [out, 2], weights float32 [out, 2])."""
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.maximum((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
    return _linear_taps(src.astype(np.int64), src, in_size)


def _bicubic(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    a = _BICUBIC_A
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def pil_bicubic_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's antialiased bicubic resampling: (indices int32 [out, K], weights float32 [out, K]).

    K = 2 * ceil(support) + 1 with support = 2 * max(in / out, 1); unused taps have weight 0.
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = _BICUBIC_SUPPORT * filter_scale
    width = 2 * math.ceil(support) + 1
    indices = np.zeros((out_size, width), np.int32)
    weights = np.zeros((out_size, width), np.float64)
    for i in range(out_size):
        centre = (i + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        last = min(int(centre + support + 0.5), in_size)
        taps = np.arange(first, last)
        w = _bicubic((taps - centre + 0.5) * (1.0 / filter_scale))
        total = w.sum()
        indices[i, : len(taps)] = taps
        weights[i, : len(taps)] = w / total if total != 0 else w
    return indices, weights.astype(np.float32)


@functools.cache
def resize_taps(method: str, in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The taps of `method` (one of RESIZE_METHODS) from in_size to out_size pixels (cached)."""
    taps = {"tf1_bilinear": tf1_bilinear_taps, "torch_bilinear": torch_bilinear_taps, "pil_bicubic": pil_bicubic_taps}[
        method
    ]
    return taps(in_size, out_size)


def _apply_taps(x: jax.Array, axis: int, indices: np.ndarray, weights: np.ndarray) -> jax.Array:
    shape = [1] * x.ndim
    shape[axis] = indices.shape[0]
    out = None
    for k in range(indices.shape[1]):
        part = jnp.take(x, indices[:, k], axis=axis) * weights[:, k].reshape(shape)
        out = part if out is None else out + part
    return out


def resample(images: jax.Array, height: int, width: int, method: str) -> jax.Array:
    """Resizes float images [N, H, W, C] to float32 [N, height, width, C] with `method`'s taps.

    Traceable (use inside jit); the taps are constants of the compiled function.
    """
    x = images.astype(jnp.float32)
    x = _apply_taps(x, 2, *resize_taps(method, x.shape[2], width))
    return _apply_taps(x, 1, *resize_taps(method, x.shape[1], height))
