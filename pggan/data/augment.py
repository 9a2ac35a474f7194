"""Device-side image ops for training batches: pure, jittable, usable inside shard_map."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def to_float(images: jax.Array, dtype=jnp.float32) -> jax.Array:
    """uint8 images (any shape) -> `dtype` in [-1, 1]: `x / 127.5 - 1` (0 -> -1, 255 -> 1)."""
    return images.astype(dtype) / jnp.asarray(127.5, dtype) - jnp.asarray(1, dtype)


def mirror(images: jax.Array, flip: jax.Array) -> jax.Array:
    """Flips image n of [N, H, W, C] left-right where flip[n] (bool [N]) is true; any dtype.

    The trainer draws `flip` per sample from keys of the global sample ids, so augmentation does not
    depend on how the batch is split over devices.
    """
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
