"""Multi-scale sliced Wasserstein distance (SWD), as PGGAN's `metrics/sliced_wasserstein.py`.

Per image: a float32 Laplacian pyramid from the full resolution R down to 16x16 (the last level is
the Gaussian residual), and from every level 128 random 7x7x3 patches flattened in (C, 7, 7) order
(147 values). Per set and level, the descriptors are normalised per channel (mean 0, std 1, ddof 0).
Between two equally large sets: 4 repeats of 128 random unit directions, project, sort, mean
absolute difference; averaged over the repeats. Reported as 1e3 x SWD per level and their average.

All randomness is injected: patch centres and directions come from a caller's `np.random.Generator`
or are passed in directly, so deterministic parts compare exactly against references.

Streaming use (the reference protocol uses 16,384 images per set):

    reals = SWDDescriptors(resolution=256, rng=np.random.default_rng(0))
    for batch in real_batches: reals.add(batch)           # uint8 [B, 256, 256, 3]
    ...same for fakes...
    scores = swd_scores(reals.finalize(), fakes.finalize(), np.random.default_rng(1))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pggan.metrics.device_batches import as_rgb_uint8, shard_batch
from pggan.metrics.errors import MetricInputError

PATCH_SIZE = 7
PATCHES_PER_IMAGE = 128
DIRECTION_REPEATS = 4
DIRECTIONS_PER_REPEAT = 128
MIN_RESOLUTION = 16
_CHANNELS = 3
DESCRIPTOR_SIZE = _CHANNELS * PATCH_SIZE * PATCH_SIZE  # 147
_BINOMIAL_1D = np.float32([1, 4, 6, 4, 1]) / 16  # outer product: the 5x5 kernel / 256


def swd_resolutions(resolution: int) -> tuple[int, ...]:
    """Pyramid level sizes R, R/2, ..., 16 for square images of side R (a power of two >= 16)."""
    if resolution < MIN_RESOLUTION or resolution & (resolution - 1):
        raise MetricInputError(
            f"SWD needs square images whose side is a power of two >= {MIN_RESOLUTION}, got {resolution}"
        )
    return tuple(resolution >> i for i in range(resolution.bit_length() - MIN_RESOLUTION.bit_length() + 1))


def _blur_axis(x: jax.Array, axis: int, gain: float) -> jax.Array:
    """5-tap binomial filter `gain * [1,4,6,4,1]/16` along `axis` with a reflect-101 border."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (2, 2)
    padded = jnp.pad(x, pad, mode="reflect")  # jnp 'reflect' == reflect-101 (edge not repeated)
    size = x.shape[axis]
    taps = [jax.lax.slice_in_dim(padded, k, k + size, axis=axis) * (gain * _BINOMIAL_1D[k]) for k in range(5)]
    return sum(taps[1:], taps[0])


def pyr_down(x: jax.Array) -> jax.Array:
    """OpenCV-style pyrDown: 5x5 binomial blur (reflect-101), keep every second pixel.

    x: float32 [N, H, W, C] -> [N, H/2, W/2, C].
    """
    return _blur_axis(_blur_axis(x, 1, 1.0), 2, 1.0)[:, ::2, ::2, :]


def pyr_up(x: jax.Array) -> jax.Array:
    """OpenCV-style pyrUp: zero-insert to 2x, 5x5 binomial blur times 4 (reflect-101).

    x: float32 [N, H, W, C] -> [N, 2H, 2W, C].
    """
    n, h, w, c = x.shape
    up = jnp.zeros((n, 2 * h, 2 * w, c), x.dtype).at[:, ::2, ::2, :].set(x)
    return _blur_axis(_blur_axis(up, 1, 2.0), 2, 2.0)


def laplacian_pyramid(images: jax.Array, num_levels: int) -> list[jax.Array]:
    """Laplacian pyramid: `lap_i = g_i - pyr_up(g_{i+1})`, the last level is `g_{num_levels-1}`.

    images: [N, S, S, C] (any real dtype; computed in float32, values of uint8 images 0..255).
    Returns num_levels float32 arrays [N, S / 2**i, S / 2**i, C].
    """
    gaussian = [images.astype(jnp.float32)]
    for _ in range(1, num_levels):
        gaussian.append(pyr_down(gaussian[-1]))
    return [g - pyr_up(g_next) for g, g_next in zip(gaussian[:-1], gaussian[1:])] + [gaussian[-1]]


def extract_descriptors(level: jax.Array, centres: jax.Array) -> jax.Array:
    """7x7 patches around given centres, flattened in (C, 7, 7) order.

    Args:
      level: float32 [N, S, S, 3].
      centres: int32 [N, P, 2], (row, column) of each patch centre, in [3, S - 3).

    Returns:
      float32 [N, P, 147].
    """
    half = PATCH_SIZE // 2

    def one_patch(image, centre):
        patch = jax.lax.dynamic_slice(
            image, (centre[0] - half, centre[1] - half, 0), (PATCH_SIZE, PATCH_SIZE, image.shape[-1])
        )
        return jnp.transpose(patch, (2, 0, 1)).reshape(-1)

    return jax.vmap(jax.vmap(one_patch, in_axes=(None, 0)))(level, centres)


@jax.jit
def _pyramid_descriptors(images: jax.Array, centres: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    """uint8 [N, S, S, 3] and per-level int32 [N, P, 2] centres -> per-level float32 [N, P, 147]."""
    levels = laplacian_pyramid(images, len(centres))
    return tuple(extract_descriptors(level, c) for level, c in zip(levels, centres))


def sample_patch_centres(
    rng: np.random.Generator, num_images: int, sizes: tuple[int, ...], count: int = PATCHES_PER_IMAGE
) -> tuple[np.ndarray, ...]:
    """Uniform patch centres for each pyramid level: per level int32 [num_images, count, 2].

    (row, column) centres in [3, size - 3). Drawn as one float block [num_images, levels, count, 2]
    so that the draws do not depend on how a stream of images is cut into batches.
    """
    half = PATCH_SIZE // 2
    uniform = rng.random((num_images, len(sizes), count, 2))
    return tuple((half + np.floor(uniform[:, i] * (size - 2 * half))).astype(np.int32) for i, size in enumerate(sizes))


def normalize_descriptors(descriptors: np.ndarray) -> np.ndarray:
    """Per-channel standardisation over one set: float32 [M, 147] -> float32 [M, 147].

    Mean and std (ddof 0) per channel over all M descriptors and their 49 positions, computed in
    float64.
    """
    d = descriptors.reshape(descriptors.shape[0], _CHANNELS, -1)
    mean = d.mean(axis=(0, 2), keepdims=True, dtype=np.float64)
    std = np.sqrt(np.mean(np.square(d - mean), axis=(0, 2), keepdims=True))
    if np.any(std == 0):
        raise MetricInputError(
            "SWD: a colour channel is constant over all patches of a pyramid level; use more (or less uniform) images"
        )
    return ((d - mean) / std).astype(np.float32).reshape(descriptors.shape)


def random_directions(
    rng: np.random.Generator,
    repeats: int = DIRECTION_REPEATS,
    count: int = DIRECTIONS_PER_REPEAT,
    dim: int = DESCRIPTOR_SIZE,
) -> np.ndarray:
    """Gaussian directions normalised to unit length: float32 [repeats, dim, count]."""
    dirs = rng.standard_normal((repeats, dim, count))
    return (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)).astype(np.float32)


@jax.jit
def sliced_wasserstein_jax(a: jax.Array, b: jax.Array, directions: jax.Array) -> jax.Array:
    """`sliced_wasserstein` jitted on the default device (accelerators); returns a float32 scalar."""

    def one_repeat(dirs):
        proj_a = jnp.sort(a @ dirs, axis=0)
        proj_b = jnp.sort(b @ dirs, axis=0)
        return jnp.mean(jnp.abs(proj_a - proj_b))

    return jnp.mean(jax.lax.map(one_repeat, directions))


def sliced_wasserstein_numpy(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
    """`sliced_wasserstein` in NumPy on the host (float32 projections, float64 means)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(
        np.mean(
            [
                np.mean(np.abs(np.sort(a @ dirs, axis=0) - np.sort(b @ dirs, axis=0)), dtype=np.float64)
                for dirs in np.asarray(directions, np.float32)
            ]
        )
    )


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
    """Sliced Wasserstein distance between two equally large descriptor sets.

    Runs in NumPy when JAX's default backend is the CPU (XLA:CPU sorts the [M, 128] projections 5-12x
    slower than NumPy, measured on 65,536 x 128), else jitted on the accelerator.

    Args:
      a, b: float32 [M, D] normalised descriptors.
      directions: float32 [R, D, K] unit directions (R repeats of K directions).

    Returns:
      mean over repeats of mean |sort(a @ dirs) - sort(b @ dirs)|.
    """
    if jax.default_backend() == "cpu":
        return sliced_wasserstein_numpy(a, b, directions)
    return float(sliced_wasserstein_jax(a, b, directions))


class SWDDescriptors:
    """Collects one set's raw SWD descriptors batch by batch (pyramid and patches run jitted).

    Memory: 128 * 147 float32 values (75 KB) per image and level, held on the host.
    """

    def __init__(self, resolution: int, rng: np.random.Generator):
        """resolution: side of the square images (power of two >= 16); rng: draws patch centres."""
        self.resolutions = swd_resolutions(resolution)
        self._rng = rng
        self._chunks: list[list[np.ndarray]] = [[] for _ in self.resolutions]

    def add(self, images: np.ndarray, centres: tuple[np.ndarray, ...] | None = None) -> None:
        """Adds a batch: uint8 [B, R, R, 3] (or 1-channel).

        centres: optional per-level int32 [B, 128, 2] patch centres; drawn from the rng if None.
        """
        images = as_rgb_uint8(images, "SWD images")
        if images.shape[1:3] != (self.resolutions[0],) * 2:
            raise MetricInputError(
                f"SWD images: expected {self.resolutions[0]}x{self.resolutions[0]}, "
                f"got {images.shape[1]}x{images.shape[2]}"
            )
        n = images.shape[0]
        if centres is None:
            centres = sample_patch_centres(self._rng, n, self.resolutions)
        sharded_images, _ = shard_batch(images)
        sharded_centres = tuple(shard_batch(np.asarray(c, np.int32))[0] for c in centres)
        for chunks, desc in zip(self._chunks, _pyramid_descriptors(sharded_images, sharded_centres)):
            desc = np.asarray(desc[:n])
            chunks.append(desc.reshape(-1, DESCRIPTOR_SIZE))

    @property
    def num_descriptors(self) -> int:
        """Descriptors collected per level so far."""
        return sum(len(c) for c in self._chunks[0])

    def finalize(self) -> dict[int, np.ndarray]:
        """Normalised descriptors per level: {resolution: float32 [M, 147]}."""
        if not self._chunks[0]:
            raise MetricInputError("SWD: no images were added")
        return {
            res: normalize_descriptors(np.concatenate(chunks)) for res, chunks in zip(self.resolutions, self._chunks)
        }


def swd_scores(real: dict[int, np.ndarray], fake: dict[int, np.ndarray], rng: np.random.Generator) -> dict[str, float]:
    """1e3 x SWD per level and averaged: {'swd_<res>': ..., 'swd_avg': ...}.

    Args:
      real, fake: normalised descriptors from `SWDDescriptors.finalize()`, same levels and counts.
      rng: draws the 4 x 128 directions of each level.
    """
    if sorted(real) != sorted(fake):
        raise MetricInputError(f"SWD: real levels {sorted(real)} differ from fake levels {sorted(fake)}")
    scores = {}
    for res in sorted(real, reverse=True):
        if real[res].shape != fake[res].shape:
            raise MetricInputError(
                f"SWD compares equally many images: reals gave {real[res].shape[0]} descriptors, "
                f"fakes {fake[res].shape[0]}; evaluate as many fakes as reals"
            )
        dist = sliced_wasserstein(real[res], fake[res], random_directions(rng))
        scores[f"swd_{res}"] = 1e3 * float(dist)
    scores["swd_avg"] = float(np.mean(list(scores.values())))
    return scores
