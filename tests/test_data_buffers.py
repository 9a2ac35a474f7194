"""Batch buffers: aligned, and recycled only when nothing (NumPy or JAX) still uses them."""

import gc

import jax
import numpy as np

from pggan.data import buffers


def test_aligned_empty_is_aligned():
    for shape, dtype in [((3, 5), np.uint8), ((7,), np.int32), ((2, 8, 8, 3), np.uint8)]:
        array = buffers.aligned_empty(shape, dtype)
        assert array.shape == shape and array.dtype == dtype and array.flags.c_contiguous
        assert array.ctypes.data % buffers.ALIGNMENT == 0


def test_pool_recycles_only_unreferenced_buffers():
    pool = buffers.BufferPool(max_buffers=4)
    first = pool.empty((4, 8, 8, 3))
    first_address = first.ctypes.data
    second = pool.empty((4, 8, 8, 3))
    assert second.ctypes.data != first_address  # `first` is still alive
    view = first[1:3]
    del first
    assert pool.empty((4, 8, 8, 3)).ctypes.data not in (first_address, second.ctypes.data)  # the view keeps it
    del view
    gc.collect()
    assert pool.empty((4, 8, 8, 3)).ctypes.data == first_address


def test_pool_never_recycles_memory_a_jax_array_uses():
    pool = buffers.BufferPool(max_buffers=4)
    batch = pool.empty((2, 4, 4, 3))
    batch[...] = 7
    on_device = jax.device_put(batch, jax.devices()[0])  # the CPU backend may adopt the buffer
    del batch
    other = pool.empty((2, 4, 4, 3))
    other[...] = 9
    assert int(on_device.sum()) == 7 * 2 * 4 * 4 * 3  # untouched, whether it was adopted or copied
