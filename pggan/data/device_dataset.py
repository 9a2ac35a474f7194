"""Holding a level on the accelerators and sampling training batches inside the compiled step.

When a level fits in device memory (all levels <= 256 px of typical datasets, up to 512 px on big
GPUs), it is put on every device once as uint8 and `sample_examples` gathers each batch inside the
jitted step: no host pipeline, no transfers. `sample_examples` uses the same stream order as the host
pipeline (order.py, in jax.numpy), so both deliver identical batches for the same seed and position.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pggan.data import order
from pggan.data.errors import DataError

if TYPE_CHECKING:  # the compiled train step imports this module; keep it free of the reading stack
    from pggan.data.dataset import PreparedDataset

ON_DEVICE_MODES = ("auto", "always", "never")
CPU_BUDGET_BYTES = 256 << 20  # per device, when the backend reports no memory limit (CPU)


@dataclasses.dataclass(frozen=True)
class DeviceLevel:
    """One level replicated on every device of a mesh.

    images: uint8 jax.Array [N, r, r, C]; labels: int32 jax.Array [N] (-1 when unlabeled).
    """

    images: jax.Array
    labels: jax.Array

    @property
    def num_examples(self) -> int:
        return self.images.shape[0]


def load_level_to_device(dataset: PreparedDataset, resolution: int, mesh: Mesh) -> DeviceLevel:
    """Reads a whole level and replicates it on all devices of `mesh`."""
    images, labels = dataset.read_level(resolution)
    replicated = NamedSharding(mesh, PartitionSpec())
    logging.info(
        "Holding %s at %d px on the devices: %.1f MiB per device",
        dataset.name,
        resolution,
        (images.nbytes + labels.nbytes) / 2**20,
    )
    return DeviceLevel(jax.device_put(images, replicated), jax.device_put(labels, replicated))


def sample_examples(images: jax.Array, labels: jax.Array, seed, positions: jax.Array):
    """The examples at the given stream positions: pure and jittable.

    images: uint8 [N, r, r, C]; labels: int32 [N]; seed: integer scalar; positions: integer [B]
    (traced is fine; taken modulo 2**32). Returns (uint8 [B, r, r, C], int32 [B]) equal to what the
    host pipeline delivers for the same positions. Inside shard_map each device passes the stream
    positions of its own rows (e.g. `start + pggan.parallel.local_sample_ids(b)`).
    """
    positions = jnp.asarray(positions).astype(jnp.uint32)
    indices = order.example_indices(jnp, positions, images.shape[0], seed)
    return jnp.take(images, indices, axis=0), jnp.take(labels, indices, axis=0)


def device_budget_bytes(device: jax.Device, memory_fraction: float) -> int:
    """Bytes of one device that a held level may take: memory_fraction of its memory limit."""
    stats = device.memory_stats() or {}
    limit = stats.get("bytes_limit")
    return int(limit * memory_fraction) if limit else CPU_BUDGET_BYTES


def should_hold_on_device(
    mode: str, dataset: PreparedDataset, resolution: int, mesh: Mesh, memory_fraction: float = 0.5
) -> bool:
    """Whether to train from a level held on the devices.

    mode: 'always', 'never', or 'auto' (when the level takes at most memory_fraction of the memory of
    the smallest local device; CPU devices get CPU_BUDGET_BYTES).
    """
    if mode not in ON_DEVICE_MODES:
        raise DataError(f"dataset.on_device must be one of {ON_DEVICE_MODES}, got {mode!r}")
    if mode != "auto":
        return mode == "always"
    local = [d for d in np.ravel(mesh.devices) if d.process_index == jax.process_index()]
    budget = min(device_budget_bytes(d, memory_fraction) for d in local)
    return dataset.level_nbytes(resolution) <= budget
