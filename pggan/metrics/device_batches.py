"""Putting image batches on all local devices: a 1-D `'data'` mesh, padded batch-sharded arrays.

Metrics run one jitted function per batch with the batch axis sharded over every device of this
process (on a multi-host job each process evaluates its own images; run evaluation on one process
or combine results yourself). Batches whose size is not a multiple of the device count are padded by
repeating their last image; callers drop the padded rows of the result with `[:num_valid]`.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pggan.metrics.errors import MetricInputError

DATA_AXIS = "data"


@functools.cache
def data_mesh() -> Mesh:
    """A 1-D mesh with axis name `'data'` over all devices local to this process."""
    return Mesh(np.asarray(jax.local_devices()), (DATA_AXIS,))


def batch_sharding() -> NamedSharding:
    """Sharding of an array whose leading (batch) axis is split over the `'data'` axis."""
    return NamedSharding(data_mesh(), PartitionSpec(DATA_AXIS))


def replicated_sharding() -> NamedSharding:
    """Sharding of an array copied whole onto every device of the mesh."""
    return NamedSharding(data_mesh(), PartitionSpec())


def as_rgb_uint8(images: np.ndarray, what: str = "images") -> np.ndarray:
    """Checks an image batch and returns it as uint8 [N, H, W, 3].

    Args:
      images: uint8 [N, H, W, 3] or [N, H, W, 1] (grayscale, tiled to 3 channels), values 0..255.
      what: name used in error messages.

    Raises:
      MetricInputError: wrong rank, dtype, channel count or an empty batch.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise MetricInputError(f"{what}: expected uint8 [N, H, W, 3] or [N, H, W, 1], got shape {images.shape}")
    if images.dtype != np.uint8:
        raise MetricInputError(
            f"{what}: expected dtype uint8 (values 0..255), got {images.dtype}; "
            "convert with np.clip(x, 0, 255).astype(np.uint8)"
        )
    if images.shape[0] == 0:
        raise MetricInputError(f"{what}: empty batch")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


def shard_batch(images: np.ndarray) -> tuple[jax.Array, int]:
    """Pads a host batch to a multiple of the device count and shards it over the `'data'` axis.

    Args:
      images: any array [N, ...].

    Returns:
      (device array [M, ...] with M >= N the next multiple of the local device count, N).
    """
    num_valid = images.shape[0]
    num_devices = data_mesh().size
    padded = -num_valid % num_devices
    if padded:
        images = np.concatenate([images, np.repeat(images[-1:], padded, axis=0)], axis=0)
    return jax.device_put(images, batch_sharding()), num_valid
