"""Improved precision and recall (Kynkaanniemi et al. 2019) on feature vectors (Inception or VGG16), jitted.

Each set's manifold is the union of balls around its samples with radius the distance to the k-th
nearest other sample of the same set (k = 3, self excluded). Precision = share of fakes inside some
real ball, recall = share of reals inside some fake ball; a point on a boundary counts as inside. StyleGAN2-ADA
and torch-fidelity compute the same on VGG16 fc2 features (`pr_vgg16`); StyleGAN2-ADA rounds the features and
the radii to float16 first, so boundary cases may differ there.

Distances are computed on the device in float32 (precision HIGHEST), on features centred by the
real mean, in row chunks so that memory stays O(chunk x N).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from pggan.metrics.errors import MetricInputError

NEIGHBOURS = 3
_CHUNK = 1024


def _squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
    """[A, D] x [B, D] -> [A, B] squared Euclidean distances, clipped at 0."""
    dots = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
    d = jnp.sum(a * a, axis=1)[:, None] + jnp.sum(b * b, axis=1)[None, :] - 2.0 * dots
    return jnp.maximum(d, 0.0)


@functools.partial(jax.jit, static_argnames="k")
def _kth_neighbour_radius(rows: jax.Array, points: jax.Array, k: int) -> jax.Array:
    """Squared distance from each row to its (k+1)-th closest point (the k-th other one)."""
    return -jax.lax.top_k(-_squared_distances(rows, points), k + 1)[0][:, k]


@jax.jit
def _inside_any_ball(rows: jax.Array, centres: jax.Array, radii: jax.Array) -> jax.Array:
    """bool [rows]: row within (<=) the radius of at least one centre."""
    return jnp.any(_squared_distances(rows, centres) <= radii[None, :], axis=1)


def _chunked(fn, rows: np.ndarray, *args) -> np.ndarray:
    """Applies fn(chunk, *args) to fixed-size row chunks (last one padded) and joins the results."""
    out = []
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], _CHUNK - len(chunk), axis=0)])
        out.append(np.asarray(fn(padded, *args))[: len(chunk)])
    return np.concatenate(out)


def manifold_radii(features: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Squared k-th nearest-neighbour distance of each sample within its set: float32 [N]."""
    points = jnp.asarray(features)
    return _chunked(lambda rows: _kth_neighbour_radius(rows, points, k), features)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = NEIGHBOURS) -> tuple[float, float]:
    """(precision, recall) of fake vs real features [N, D], [M, D] (each set more than k samples)."""
    real, fake = np.asarray(real), np.asarray(fake)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise MetricInputError(f"precision/recall: features {real.shape} and {fake.shape} are not [N, D] and [M, D]")
    if min(len(real), len(fake)) <= k:
        raise MetricInputError(
            f"precision/recall needs more than k={k} samples per set, got {len(real)} reals and {len(fake)} fakes"
        )
    centre = real.mean(axis=0, dtype=np.float64)
    real = (real - centre).astype(np.float32)
    fake = (fake - centre).astype(np.float32)
    real_radii, fake_radii = manifold_radii(real, k), manifold_radii(fake, k)
    precision = _chunked(_inside_any_ball, fake, jnp.asarray(real), jnp.asarray(real_radii))
    recall = _chunked(_inside_any_ball, real, jnp.asarray(fake), jnp.asarray(fake_radii))
    return float(precision.mean()), float(recall.mean())
