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

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"

# XLA:CPU hands convolutions and matrix products to YNNPACK fusions by default. XLA's own (Eigen) kernels ran
# pggan's programs faster on the x86-64 CPU of BENCHMARKS.md: the training step 1.1-1.5x, the generator at
# the official widths 1.1-1.2x, the Inception of FID/KID/IS 2.3x.
_CPU_WITHOUT_YNNPACK = {"xla_cpu_experimental_ynn_fusion_type": ""}


def compiler_options(platform: str, *, ynnpack: bool = False) -> dict[str, str | bool]:
    """XLA compiler options (`jax.jit(compiler_options=...)`) of pggan's programs on devices of `platform`
    ('cpu', 'gpu', 'tpu'): on CPUs, unless `ynnpack`, no YNNPACK fusions; none elsewhere."""
    return dict(_CPU_WITHOUT_YNNPACK) if platform == "cpu" and not ynnpack else {}


@functools.cache
def jit_for(platform: str, function, **jit_options):
    """`jax.jit(function, **jit_options)` with the `compiler_options` of `platform`, made once per platform,
    function and options, so that every caller shares its compiled programs."""
    return jax.jit(function, compiler_options=compiler_options(platform), **jit_options)


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
        lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda index: np.asarray(x)[index]), tree
    )


def local_mesh(mesh: jax.sharding.Mesh) -> jax.sharding.Mesh:
    """The 1-D 'data' mesh of this process's devices of `mesh` (the whole mesh in a one-process run)."""
    return make_mesh([d for d in mesh.devices.flat if d.process_index == jax.process_index()])


def local_copy(tree):
    """A pytree of replicated (possibly multi-process) arrays as arrays on one local device each.

    The result can be used in computations of this process alone (e.g. sample grids on process 0);
    fully addressable arrays are returned unchanged.
    """
    return jax.tree.map(lambda x: x if x.is_fully_addressable else x.addressable_data(0), tree)


@jax.jit
def _any(flags: jax.Array) -> jax.Array:
    return jnp.any(flags)


def any_process(flag: bool, mesh: jax.sharding.Mesh) -> jax.Array:
    """Starts the OR of one bool per process over all processes of `mesh`, without waiting for it.

    Returns a replicated bool scalar; `bool(jax.device_get(result))` waits and is the same on every
    process. Every process must call this the same number of times (it is a collective).
    """
    local = np.full((sum(d.process_index == jax.process_index() for d in mesh.devices.flat),), flag)
    flags = jax.make_array_from_process_local_data(batch_sharded(mesh), local, (mesh.size,))
    return _any(flags)


def process_zero_first(fn, failure: Exception):
    """Runs fn() on process 0 first, then on the other processes; returns its result.

    For work that must happen once where storage is shared (preparing a missing dataset) but also
    works where each host has its own disk. If fn raises on process 0, the other processes raise
    `failure` (a one-line error pointing at process 0's message) instead of waiting forever.
    """
    if jax.process_count() == 1:
        return fn()
    from jax.experimental import multihost_utils

    if jax.process_index() == 0:
        try:
            result = fn()
        except Exception:
            multihost_utils.broadcast_one_to_all(np.int32(0))
            raise
        multihost_utils.broadcast_one_to_all(np.int32(1))
        return result
    if not multihost_utils.broadcast_one_to_all(np.int32(0)):
        raise failure
    return fn()
