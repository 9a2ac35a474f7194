"""Device-side image ops for training batches: pure, jittable, usable inside shard_map."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def to_float(images: jax.Array, dtype=jnp.float32) -> jax.Array:
    """uint8 images (any shape) -> `dtype` in [-1, 1]: `x / 127.5 - 1` (0 -> -1, 255 -> 1)."""
    return images.astype(dtype) / jnp.asarray(127.5, dtype) - jnp.asarray(1, dtype)


def random_mirror(key: jax.Array, images: jax.Array) -> jax.Array:
    """Flips each image of [N, H, W, C] left-right with probability 1/2 (independently per sample).

    Works for any dtype; the flips are drawn from `key` (one Bernoulli per sample).
    """
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
