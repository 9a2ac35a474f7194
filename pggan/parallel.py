"""Device mesh, shardings and the sample layout of data-parallel training.

Training is data parallel over a 1-D mesh (axis `'data'`) of every device of every process, written
per device with `jax.shard_map` (pmap's programming model): parameters are replicated, the batch is
split over devices, gradients are averaged with `lax.pmean`, and minibatch stddev runs per device as
in the official multi-GPU towers.

Sample layout. Device d of D holds the global samples d, d + D, d + 2D, ... of a minibatch (strided,
not contiguous). Minibatch-stddev groups are strided too (sample n of N belongs to group
n mod (N / G)), so a device's local groups are exactly the groups the single-device computation would
form: results do not depend on the device count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh named 'data' over all devices of all processes (or the given ones)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.sharding.Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Sharding of parameters and optimizer state: a full copy on every device."""
    return NamedSharding(mesh, P())


def batch_sharded(mesh: jax.sharding.Mesh, batch_axis: int = 0) -> NamedSharding:
    """Sharding that splits axis `batch_axis` over the mesh's devices."""
    return NamedSharding(mesh, P(*([None] * batch_axis), DATA_AXIS))


def device_major_order(batch_size: int, num_devices: int) -> np.ndarray:
    """Row permutation that puts a minibatch in the strided device layout.

    Row `d * b + j` of the permuted batch (b = batch_size / num_devices rows per device) is global
    sample `d + num_devices * j`. Returns int64 [batch_size]: `permuted = batch[order]`.
    """
    if batch_size % num_devices:
        raise ValueError(f"minibatch {batch_size} does not divide over {num_devices} devices")
    return np.arange(batch_size).reshape(batch_size // num_devices, num_devices).T.reshape(-1)


def local_sample_ids(local_batch: int) -> jax.Array:
    """Inside `shard_map`: global sample ids [local_batch] int32 of this device's rows (strided layout)."""
    num_devices = jax.lax.axis_size(DATA_AXIS)
    return jax.lax.axis_index(DATA_AXIS) + num_devices * jnp.arange(local_batch, dtype=jnp.int32)


def put_replicated(tree, mesh: jax.sharding.Mesh):
    """Places a pytree of host arrays (identical on every process) replicated on the mesh."""
    sharding = replicated(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda index: np.asarray(x)[index]), tree)
