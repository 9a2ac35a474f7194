"""Gradient accumulation: one device's minibatch run as equal microbatches of whole stddev groups.

At high resolutions the activations of a D step (with the gradient penalty's double backward) for a
whole per-device minibatch may not fit in device memory. Microbatching keeps the global minibatch
and the computed function: each device splits its rows into `count` microbatches, runs the loss and
its gradient on one microbatch at a time (`lax.scan`, so only one microbatch's activations are live)
and averages the results. This equals the full-batch computation, up to float summation order,
because every microbatch holds whole minibatch-stddev groups: with G = min(group_size, N) and
M = N / G, local row n belongs to group n mod M (`layers.minibatch_stddev`), and microbatch c takes
the groups c * M / count ... (c + 1) * M / count - 1 with all their rows, in an order in which the
stddev layer forms exactly those groups again.

This differs from the official `max_minibatch_per_device`, which shrinks the minibatch itself.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def stddev_group(per_device: int, mbstd_group_size: int) -> int:
    """Rows per minibatch-stddev group of a device batch (1 when the layer is off)."""
    return min(mbstd_group_size, per_device) if mbstd_group_size > 1 else 1


def microbatch_count(per_device: int, max_microbatch: int | None, mbstd_group_size: int) -> int:
    """Fewest equal microbatches of whole stddev groups with at most `max_microbatch` rows each.

    Args:
      per_device: rows of one device's minibatch.
      max_microbatch: the cap (None or 0: no cap, one microbatch).
      mbstd_group_size: the model's minibatch-stddev group size.

    Raises:
      ValueError: no split satisfies the cap (the message names the possible sizes).
    """
    if not max_microbatch or max_microbatch >= per_device:
        return 1
    group = stddev_group(per_device, mbstd_group_size)
    num_groups = per_device // group
    for count in range(1, num_groups + 1):
        if num_groups % count == 0 and per_device // count <= max_microbatch:
            return count
    sizes = sorted({per_device // c for c in range(1, num_groups + 1) if num_groups % c == 0})
    raise ValueError(
        f"cannot split {per_device} images per device into equal microbatches of whole "
        f"minibatch-stddev groups ({group} images) of at most {max_microbatch} images; "
        f"possible microbatch sizes: {sizes}"
    )


def split(x: jax.Array, count: int, group: int) -> jax.Array:
    """[N, ...] -> [count, N / count, ...]: microbatch c holds whole stddev groups (see module doc)."""
    n = x.shape[0]
    rows = x.reshape(group, count, n // (group * count), *x.shape[1:])
    return jnp.swapaxes(rows, 0, 1).reshape(count, n // count, *x.shape[1:])


def mean_over_microbatches(fn: Callable, batch, count: int, group: int):
    """`fn(batch)` computed as the mean of `fn(microbatch)` over `count` microbatches.

    Args:
      fn: microbatch (a pytree of [n, ...] arrays) -> pytree of float arrays (losses, means,
        gradients: quantities whose full-batch value is the mean of the microbatch values).
      batch: pytree of per-row arrays [N, ...] (None leaves allowed).
      count: number of microbatches (1 calls fn on the whole batch).
      group: rows per minibatch-stddev group (`stddev_group`).
    """
    if count == 1:
        return fn(batch)
    microbatches = jax.tree.map(lambda x: split(x, count, group), batch)
    first = jax.tree.map(lambda x: x[0], microbatches)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, first))

    def accumulate(total, microbatch):
        return jax.tree.map(jnp.add, total, fn(microbatch)), None

    total, _ = jax.lax.scan(accumulate, zeros, microbatches)
    return jax.tree.map(lambda x: x / count, total)
