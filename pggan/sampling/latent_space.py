"""Latents for sampling: grid shapes, seeded latents, one-hot labels, the truncation trick, interpolation paths.

Everything here is plain NumPy on the host, so the same seed gives the same latents on every
machine, batch composition and device count. Latents are float32 [..., latent_size] drawn from the
prior N(0, I); labels are float32 one-hot [N, label_size].

Random streams (stable; changing them changes every user's seeds):
  - `latents_for_seeds`: image i uses `np.random.default_rng(seeds[i])`.
  - `grid_latents`: one `np.random.default_rng(seed)` draws all rows in order, so a smaller grid of
    the same seed is a prefix of a larger one, and row 0 equals `latents_for_seeds([seed])[0]`.
  - `keyframe_walk`: keyframe k of a grid of walks is `grid_latents(seeds[k], num_walks)`, so the
    keyframes of a video are the sample grids of its seeds.
  - `smooth_random_walk`: walk w uses `np.random.default_rng([seed, w])`, so a walk does not depend
    on how many walks share the video.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from pggan.errors import UserError
from pggan.model.networks import ModelSpec

# Taps of the Gaussian filter reach `GAUSSIAN_TRUNCATE * sigma` frames (scipy.ndimage's default).
GAUSSIAN_TRUNCATE = 4.0


class SamplingError(UserError):
    """Impossible sampling settings (bad seeds, labels, psi, frame counts)."""


# ----------------------------------------------------------------------------------------------
# Grid shapes


def snapshot_grid_size(resolution: int) -> tuple[int, int]:
    """(rows, cols) of the official 1080p training snapshot: clip(1080 // R, 2, 32) x clip(1920 // R, 3, 32)."""
    return int(np.clip(1080 // resolution, 2, 32)), int(np.clip(1920 // resolution, 3, 32))


def parse_grid_spec(spec: str) -> tuple[int, int]:
    """'ROWSxCOLS' (e.g. '8x8', '2x3') -> (rows, cols), both positive."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(spec))
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise SamplingError(f"grid must look like ROWSxCOLS with positive numbers, e.g. '8x8', got {spec!r}")
    return int(match[1]), int(match[2])


# ----------------------------------------------------------------------------------------------
# Seeded latents and labels


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SamplingError(f"seeds must be non-negative integers, got {seed!r}")
    return int(seed)


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SamplingError(f"{name} must be a positive integer, got {value!r}")


def parse_seeds(text: str) -> list[int]:
    """A seed list as users write it: '1,5,7-10' -> [1, 5, 7, 8, 9, 10] (ranges inclusive, order kept).

    SamplingError (one line) for anything else: a descending range ('5-1'), a non-number ('x'), an empty list.
    """
    seeds = []
    for part in (p.strip() for p in str(text).split(",")):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise SamplingError(
                f"seeds must be non-negative integers and ranges like 1,5,7-10; {part!r} in {text!r} is neither"
            )
        if dash and int(high) < int(low):
            raise SamplingError(f"seed range {part!r} in {text!r} runs backwards; write it {high}-{low}")
        seeds.extend(range(int(low), int(high if dash else low) + 1))
    return seeds


def latents_for_seeds(seeds: Sequence[int], latent_size: int) -> np.ndarray:
    """One latent per seed: float32 [len(seeds), latent_size] ~ N(0, 1), independent of the others."""
    _check_positive("latent_size", latent_size)
    rows = [np.random.default_rng(_check_seed(s)).standard_normal(latent_size) for s in seeds]
    return np.asarray(rows, np.float32).reshape(len(rows), latent_size)


def grid_latents(seed: int, num: int, latent_size: int) -> np.ndarray:
    """`num` latents from one seed (a sample grid): float32 [num, latent_size] ~ N(0, 1).

    The first k rows are the same for every num >= k.
    """
    _check_positive("num", num)
    _check_positive("latent_size", latent_size)
    rng = np.random.default_rng(_check_seed(seed))
    return rng.standard_normal((num, latent_size)).astype(np.float32)


def one_hot_labels(class_ids: Sequence[int], label_size: int) -> np.ndarray:
    """Class ids [N] in [0, label_size) -> float32 one-hot labels [N, label_size]."""
    ids = np.asarray(class_ids)
    if label_size < 1:
        raise SamplingError("labels were given but the model is unconditional (label_size = 0)")
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or np.any((ids < 0) | (ids >= label_size)):
        raise SamplingError(f"class labels must be integers in [0, {label_size}), got {list(np.ravel(ids))}")
    return np.eye(label_size, dtype=np.float32)[ids]


# ----------------------------------------------------------------------------------------------
# Truncation trick


def truncate(
    latents: np.ndarray, labels: np.ndarray | None, psi: float, spec: ModelSpec
) -> tuple[np.ndarray, np.ndarray | None]:
    """The truncation trick for PGGAN's generator, done on its inputs (no change to the network).

    Definition. PGGAN has no mapping network; the only place all latents meet linearly is the input
    of G's first (dense) layer, `x = PixelNorm([z, y])` (or `[z, y]` without `normalize_latents`).
    Because that layer is linear, moving x toward the mean input `c` moves the layer's
    pre-activation toward the mean response: truncation with psi is `x' = c + psi * (x - c)`,
    the analogue of StyleGAN's `w_avg + psi * (w - w_avg)`. psi = 1 is the identity; psi = 0 maps
    every latent to c, hence to one image (per label). Scaling z itself would do nothing: PixelNorm
    removes the scale.
      - Unconditional: c = 0 (the prior is symmetric), so x' = psi * x.
      - Conditional: c = [0, y * s], with s the PixelNorm scale of a latent of the typical norm
        sqrt(latent_size); the label part of x moves toward it and the latent part toward 0.

    Implementation. PixelNorm (`v * rsqrt(mean(v**2) + eps)`, eps > 0) maps the ray through any
    target t with mean(t**2) < 1 to t at exactly one point, `v = t * sqrt(eps / (1 - mean(t**2)))`.
    This function returns that v split back into (latents, labels), so the unchanged generator's
    own PixelNorm produces x' (to float32 precision). x' is a convex combination of two points
    with mean square < 1, so such a v exists for every psi in [0, 1].

    Args:
      latents: float [N, latent_size].
      labels: float one-hot [N, label_size], or None for an unconditional model.
      psi: truncation in [0, 1].
      spec: the generator's ModelSpec (latent/label sizes, normalize_latents, pixelnorm_epsilon).

    Returns:
      (latents, labels) to feed to G, float32 [N, latent_size] and [N, label_size] (or None).
      At psi = 1 the inputs are returned unchanged.
    """
    if not 0.0 <= psi <= 1.0:
        raise SamplingError(f"truncation psi must be in [0, 1], got {psi}")
    z = np.asarray(latents, np.float64)
    if z.ndim != 2 or z.shape[1] != spec.latent_size:
        raise SamplingError(f"latents must be [N, {spec.latent_size}], got shape {z.shape}")
    if spec.label_size == 0 and labels is not None:
        raise SamplingError("labels were given but the model is unconditional (label_size = 0)")
    y = np.zeros((len(z), 0)) if labels is None else np.asarray(labels, np.float64)
    if y.shape != (len(z), spec.label_size):
        raise SamplingError(f"labels must be [{len(z)}, {spec.label_size}], got shape {y.shape}")
    if psi == 1.0:
        return latents, labels
    if not spec.normalize_latents:  # x = [z, y]; c = [0, y]
        return (psi * z).astype(np.float32), labels
    eps = spec.pixelnorm_epsilon
    if eps <= 0:
        raise SamplingError("truncation needs model.pixelnorm_epsilon > 0 (PixelNorm ignores input scale)")
    width = spec.latent_size + spec.label_size
    label_sq = np.sum(y * y, axis=1, keepdims=True)
    sample_scale = 1.0 / np.sqrt((np.sum(z * z, axis=1, keepdims=True) + label_sq) / width + eps)
    center_scale = 1.0 / np.sqrt((spec.latent_size + label_sq) / width + eps)
    target_z = psi * sample_scale * z
    target_y = (center_scale + psi * (sample_scale - center_scale)) * y
    mean_sq = (np.sum(target_z**2, axis=1, keepdims=True) + np.sum(target_y**2, axis=1, keepdims=True)) / width
    k = np.sqrt(eps / (1.0 - mean_sq))
    new_labels = None if labels is None else (k * target_y).astype(np.float32)
    return (k * target_z).astype(np.float32), new_labels


# ----------------------------------------------------------------------------------------------
# Spherical interpolation and keyframe paths


def slerp(a: np.ndarray, b: np.ndarray, t) -> np.ndarray:
    """Spherical interpolation from a (t = 0) to b (t = 1).

    The direction moves along the great circle between a/|a| and b/|b| at constant angular speed;
    the norm moves linearly from |a| to |b|. Exact at t = 0 and t = 1.

    Args:
      a, b: float [..., D], non-zero, not opposite.
      t: float, broadcastable to a.shape[:-1] (numbers in [0, 1]).

    Returns:
      float32 [..., D].
    """
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.asarray(t, np.float64)[..., None]
    norm_a = np.linalg.norm(a64, axis=-1, keepdims=True)
    norm_b = np.linalg.norm(b64, axis=-1, keepdims=True)
    if np.any(norm_a == 0) or np.any(norm_b == 0):
        raise SamplingError("slerp needs non-zero latents")
    unit_a, unit_b = a64 / norm_a, b64 / norm_b
    cos = np.clip(np.sum(unit_a * unit_b, axis=-1, keepdims=True), -1.0, 1.0)
    if np.any(cos < -1.0 + 1e-12):
        raise SamplingError("slerp between opposite latents is undefined")
    omega = np.arccos(cos)
    sin = np.sin(omega)
    parallel = sin < 1e-6  # nearly equal directions: normalised lerp
    safe_sin = np.where(parallel, 1.0, sin)
    weight_a = np.where(parallel, 1.0 - t, np.sin((1.0 - t) * omega) / safe_sin)
    weight_b = np.where(parallel, t, np.sin(t * omega) / safe_sin)
    direction = weight_a * unit_a + weight_b * unit_b
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    out = direction * ((1.0 - t) * norm_a + t * norm_b)
    out = np.where(t == 0.0, a64, np.where(t == 1.0, b64, out))
    return out.astype(np.float32)


def _segment_bounds(num_keyframes: int, num_frames: int, loop: bool) -> np.ndarray:
    """Frame index where each segment starts, plus the end of the last: int [segments + 1]."""
    _check_positive("num_frames", num_frames)
    segments = num_keyframes if loop else num_keyframes - 1
    intervals = num_frames if loop else num_frames - 1
    if segments < 1:
        raise SamplingError(f"an interpolation needs at least {1 if loop else 2} keyframes, got {num_keyframes}")
    if intervals < segments:
        raise SamplingError(f"{num_keyframes} keyframes need at least {segments + (not loop)} frames, got {num_frames}")
    return np.rint(np.arange(segments + 1) * intervals / segments).astype(np.int64)


def keyframe_indices(num_keyframes: int, num_frames: int, loop: bool) -> np.ndarray:
    """Frame index of each keyframe in a path of `num_frames` frames: int [num_keyframes].

    Keyframe k sits at round(k * intervals / segments), with segments = K (loop: the last keyframe
    returns to the first, which frame num_frames would repeat) or K - 1 (no loop: the last frame is
    the last keyframe, intervals = num_frames - 1).
    """
    return _segment_bounds(num_keyframes, num_frames, loop)[:num_keyframes]


def keyframe_path(keyframes: np.ndarray, num_frames: int, loop: bool = True) -> np.ndarray:
    """Latents that slerp through keyframes: [K, ..., D] -> float32 [num_frames, ..., D].

    Keyframe k is frame `keyframe_indices(K, num_frames, loop)[k]`, exactly. Extra middle axes
    (e.g. [K, num_cells, D] for a grid of paths) are interpolated independently.
    """
    keyframes = np.asarray(keyframes, np.float32)
    num_keyframes = len(keyframes)
    bounds = _segment_bounds(num_keyframes, num_frames, loop)
    frames = np.arange(num_frames)
    segment = np.minimum(np.searchsorted(bounds, frames, side="right") - 1, len(bounds) - 2)
    t = (frames - bounds[segment]) / (bounds[segment + 1] - bounds[segment])
    t = t.reshape((num_frames,) + (1,) * (keyframes.ndim - 2))
    return slerp(keyframes[segment], keyframes[(segment + 1) % num_keyframes], t)


def keyframe_walk(
    seeds: Sequence[int], num_frames: int, latent_size: int, *, num_walks: int = 1, loop: bool = True
) -> np.ndarray:
    """Latents that slerp through the sample grids of the given seeds (keyframe interpolation videos).

    Keyframe k of walk w is `grid_latents(seeds[k], num_walks, latent_size)[w]`: the keyframes of a
    grid of walks are the sample grids of those seeds, and a single walk passes through
    `latents_for_seeds(seeds)`. Keyframe k sits at frame `keyframe_indices(len(seeds), num_frames, loop)[k]`.

    Returns:
      float32 [num_frames, num_walks, latent_size].
    """
    keyframes = [grid_latents(seed, num_walks, latent_size) for seed in seeds]
    return keyframe_path(np.reshape(keyframes, (len(keyframes), num_walks, latent_size)), num_frames, loop)


# ----------------------------------------------------------------------------------------------
# Smooth random walk


def circular_gaussian_filter(x: np.ndarray, sigma: float, axis: int = 0) -> np.ndarray:
    """Gaussian smoothing along `axis` with wrap-around boundaries (scipy.ndimage mode='wrap').

    Taps reach round(4 * sigma) samples each side and are normalised to sum 1; a kernel longer than
    the signal wraps around it as often as needed. sigma = 0 returns x. float64, x's shape.
    """
    if sigma < 0:
        raise SamplingError(f"smoothing sigma must be >= 0, got {sigma}")
    x = np.asarray(x, np.float64)
    length = x.shape[axis]
    radius = int(GAUSSIAN_TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2) if radius else np.ones(1)
    kernel = np.zeros(length)
    np.add.at(kernel, offsets % length, taps / taps.sum())
    spectrum = np.fft.rfft(kernel).reshape((-1,) + (1,) * (x.ndim - 1 - axis % x.ndim))
    return np.fft.irfft(np.fft.rfft(x, axis=axis) * spectrum, n=length, axis=axis)


def smooth_random_walk(
    num_frames: int, latent_size: int, *, fps: float, smoothing_sec: float, seed: int, num_walks: int = 1
) -> np.ndarray:
    """A looping random walk in latent space (the paper's interpolation videos).

    White Gaussian latents are filtered along time with a Gaussian of sigma = smoothing_sec * fps
    frames and wrap-around, so the last frame flows into the first, then each frame's latent is
    renormalised to the hypersphere of radius sqrt(latent_size). (The official script rescales all
    frames by one global factor instead; under G's PixelNorm only the direction matters.)

    Returns:
      float32 [num_frames, num_walks, latent_size], every row of norm sqrt(latent_size).
    """
    for name, value in (("num_frames", num_frames), ("latent_size", latent_size), ("num_walks", num_walks)):
        _check_positive(name, value)
    if fps <= 0:
        raise SamplingError(f"fps must be positive, got {fps}")
    seed = _check_seed(seed)
    noise = np.stack(
        [np.random.default_rng([seed, w]).standard_normal((num_frames, latent_size)) for w in range(num_walks)], axis=1
    )
    walk = circular_gaussian_filter(noise, smoothing_sec * fps, axis=0)
    walk *= math.sqrt(latent_size) / np.linalg.norm(walk, axis=-1, keepdims=True)
    return walk.astype(np.float32)
