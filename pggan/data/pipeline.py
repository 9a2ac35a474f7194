"""The host input pipeline: global batches of one level of a prepared dataset, as sharded jax.Arrays.

Batches follow the stream order of order.py: global batch k of size B holds stream positions
[start + k*B, start + (k+1)*B). Each process reads only its own rows of every global batch (the rows
its devices hold under `NamedSharding(mesh, P('data'))`), so a global batch is the same whatever the
number of processes and devices. grain runs the reads in threads and prefetches them; a small queue
keeps the next batches' host-to-device copies in flight. Host batches come from recycled, aligned
buffers (buffers.py). The checkpointable state is the stream
position: `get_state()` / `set_state()` are JSON-able, and the iterator is a `grain.DatasetIterator`,
so `grain.checkpoint.CheckpointSave(iterator)` / `CheckpointRestore(iterator)` work in an Orbax
`Composite`. When the resolution or the batch size changes, build a new iterator at the old one's
`position`: the stream continues exactly.
"""

from __future__ import annotations

import collections
from typing import Any

import grain
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pggan.data import buffers, order
from pggan.data.dataset import PreparedDataset
from pggan.data.errors import DataError

DATA_AXIS = "data"
_ENDLESS = 2**40  # batches in the (endless) stream


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batch-dimension sharding over the mesh axis 'data' (replicated over any other axis)."""
    if DATA_AXIS not in mesh.axis_names:
        raise DataError(f"the mesh needs an axis named {DATA_AXIS!r}, it has {mesh.axis_names}")
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def process_rows(sharding: NamedSharding, batch_size: int) -> tuple[int, int]:
    """The rows [lo, hi) of a global batch of `batch_size` that this process's devices hold."""
    data_devices = sharding.mesh.shape[DATA_AXIS]
    if batch_size % data_devices:
        raise DataError(
            f"batch size {batch_size} is not divisible by the {data_devices} devices of mesh axis "
            f"{DATA_AXIS!r}; use a multiple of {data_devices}"
        )
    slices = {
        index[0].indices(batch_size)[:2] for index in sharding.addressable_devices_indices_map((batch_size,)).values()
    }
    lo, hi = min(s[0] for s in slices), max(s[1] for s in slices)
    if sum(stop - start for start, stop in slices) != hi - lo:
        raise DataError(
            "this process's devices do not hold a contiguous block of the batch; build the mesh "
            "with jax.make_mesh so that each process's devices are adjacent"
        )
    return lo, hi


class InputIterator(grain.DatasetIterator):
    """Endless global batches {'images': uint8 [B, r, r, C], 'labels': int32 [B]} sharded over 'data'.

    dataset, resolution: the prepared dataset and the level to read.
    batch_size: the global batch size B (a multiple of the devices on mesh axis 'data').
    seed: the run's data seed; position: the stream position of the first batch.
    num_threads, prefetch_batches: grain's reader threads and its read-ahead (in batches).
    device_prefetch: batches whose host-to-device copies are started ahead of use.
    row_order: optional int [B] permutation: row i of each global batch holds stream offset
      row_order[i] (the trainer's strided device layout, `pggan.parallel.device_major_order`);
      default: row i holds offset i.
    """

    def __init__(
        self,
        dataset: PreparedDataset,
        *,
        resolution: int,
        batch_size: int,
        mesh: Mesh,
        seed: int,
        position: int = 0,
        num_threads: int = 2,
        prefetch_batches: int = 4,
        device_prefetch: int = 2,
        row_order: np.ndarray | None = None,
    ):
        super().__init__()
        self._host_iterator = None
        self._level = dataset.level(resolution)
        self._sharding = batch_sharding(mesh)
        lo, hi = process_rows(self._sharding, batch_size)
        offsets = np.arange(batch_size, dtype=np.int64) if row_order is None else np.asarray(row_order, np.int64)
        if sorted(offsets.tolist()) != list(range(batch_size)):
            raise DataError(f"row_order must be a permutation of range({batch_size})")
        self._rows = offsets[lo:hi]
        self.batch_size = batch_size
        self.resolution = resolution
        self.seed = seed
        self._read_options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_batches)
        self._device_prefetch = max(1, device_prefetch)
        self._pool = buffers.BufferPool()
        self._restart(position)

    @property
    def position(self) -> int:
        """Stream position of the next batch that __next__ returns."""
        return self._position

    def _read_local_batch(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """This process's rows of the global batch starting at stream position `start`."""
        indices = order.example_indices(np, start + self._rows, self._level.num_examples, self.seed)
        return self._level.read(indices, self._pool)

    def _restart(self, position: int) -> None:
        self._close_host_iterator()
        first, size = position, self.batch_size
        batches = grain.MapDataset.range(_ENDLESS).map(lambda k: self._read_local_batch(first + k * size))
        self._host_iterator = iter(batches.to_iter_dataset(self._read_options))
        self._on_device = collections.deque()
        self._position = position

    def _to_global(self, local: tuple[np.ndarray, np.ndarray]) -> dict[str, jax.Array]:
        images, labels = local
        return {
            "images": jax.make_array_from_process_local_data(
                self._sharding, images, (self.batch_size, *images.shape[1:])
            ),
            "labels": jax.make_array_from_process_local_data(self._sharding, labels, (self.batch_size,)),
        }

    def __next__(self) -> dict[str, jax.Array]:
        self._assert_not_closed()
        while len(self._on_device) < self._device_prefetch:
            self._on_device.append(self._to_global(next(self._host_iterator)))
        self._position += self.batch_size
        return self._on_device.popleft()

    def get_state(self) -> dict[str, Any]:
        """JSON-able state: the stream position plus what must match on restore."""
        return {"position": self._position, "seed": self.seed, "num_examples": self._level.num_examples}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continues the stream at state['position'] (from get_state, possibly of another iterator)."""
        for key, mine in (("seed", self.seed), ("num_examples", self._level.num_examples)):
            if state.get(key, mine) != mine:
                raise DataError(
                    f"the input state was saved with {key}={state[key]} but this run has {mine}; "
                    f"restoring it would not continue the same example stream"
                )
        self._restart(int(state["position"]))

    def _close_host_iterator(self) -> None:
        if self._host_iterator is not None and hasattr(self._host_iterator, "close"):
            self._host_iterator.close()
        self._host_iterator = None

    def close(self) -> None:
        """Stops the reader threads."""
        self._close_host_iterator()
        super().close()
