"""The order in which training sees a prepared dataset: a pure function of (seed, stream position).

Training reads one endless stream of examples. Stream position `p` (0, 1, 2, ...) belongs to epoch
`p // N` and shows example `permute(p % N)`, where `permute` is a pseudo-random permutation of
`[0, N)` keyed by `(seed, epoch)`. Global batch `k` of size `B` covers positions
`[start + k*B, start + (k+1)*B)`; the trainer can change `B` (or the resolution) at any position and
the stream continues unchanged, and a checkpoint only has to remember the position.

The permutation is a 4-round Feistel network on `2*h` bits (`4**h >= N`) with cycle walking
(re-apply until the value falls below `N`), evaluated element-wise in uint32 arithmetic. It needs no
per-epoch state and costs O(B) per batch, and the very same code runs in NumPy (host input pipeline)
and in `jax.numpy` inside a compiled step (on-device sampling), giving bit-identical indices.
Positions and seeds are taken modulo 2**32.
"""

from __future__ import annotations

import types

import numpy as np

_ROUNDS = 4
_GOLDEN = 0x9E3779B9


def _u32(xp: types.ModuleType, value) -> np.ndarray:
    """`value` as a uint32 array of backend `xp` (NumPy or jax.numpy), wrapping modulo 2**32."""
    if isinstance(value, int):
        return xp.asarray(np.uint32(value & 0xFFFFFFFF))
    return xp.asarray(value).astype(xp.uint32)


def _mix(xp: types.ModuleType, x):
    """A strong 32-bit integer hash (the 'lowbias32' finaliser); uint32 in, uint32 out."""
    x = x ^ (x >> 16)
    x = x * _u32(xp, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * _u32(xp, 0x846CA68B)
    return x ^ (x >> 16)


def _half_bits(num_examples: int) -> int:
    """Bits of one Feistel half: the smallest h >= 1 with 4**h >= num_examples."""
    h = 1
    while 4**h < num_examples:
        h += 1
    return h


def _feistel(xp: types.ModuleType, x, round_keys, half_bits: int):
    """One pass of the Feistel permutation of [0, 4**half_bits); x, round_keys: uint32 arrays."""
    mask = _u32(xp, (1 << half_bits) - 1)
    left, right = x >> half_bits, x & mask
    for key in round_keys:
        left, right = right, left ^ (_mix(xp, right ^ key) & mask)
    return (left << half_bits) | right


def permute(xp: types.ModuleType, indices, num_examples: int, seed, epoch):
    """Maps `indices` (uint32, each in [0, num_examples)) through the permutation keyed by (seed, epoch).

    seed, epoch: Python ints or uint32 arrays broadcastable to `indices` (traced values are fine).
    Returns uint32 values in [0, num_examples), a bijection of [0, num_examples) for fixed keys.
    """
    if not 1 <= num_examples < 2**32:
        raise ValueError(f"num_examples must be in [1, 2**32), got {num_examples}")
    half_bits = _half_bits(num_examples)
    base = _mix(xp, _u32(xp, seed) ^ _mix(xp, _u32(xp, epoch) + _u32(xp, _GOLDEN)))
    round_keys = [_mix(xp, base + _u32(xp, (r + 1) * _GOLDEN)) for r in range(_ROUNDS)]
    x = _feistel(xp, _u32(xp, indices), round_keys, half_bits)
    if num_examples == 4**half_bits:
        return x
    if xp is np:
        while True:
            outside = x >= num_examples
            if not outside.any():
                return x
            x = np.where(outside, _feistel(np, x, round_keys, half_bits), x)

    import jax  # only the jax.numpy path needs it

    def walk(y):
        return xp.where(y >= num_examples, _feistel(xp, y, round_keys, half_bits), y)

    return jax.lax.while_loop(lambda y: xp.any(y >= num_examples), walk, x)


def example_indices(xp: types.ModuleType, positions, num_examples: int, seed):
    """The example index shown at each stream position.

    positions: integer array (any shape) of stream positions, taken modulo 2**32.
    num_examples: N, the size of the dataset (static).
    seed: the run's data seed (Python int or uint32 array, traced values are fine).
    Returns uint32 indices in [0, N), same shape as `positions`.
    """
    positions = _u32(xp, positions)
    n = _u32(xp, num_examples)
    return permute(xp, positions % n, num_examples, seed, positions // n)
