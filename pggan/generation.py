"""Batched image generation, sharded over the devices of a 1-D 'data' mesh, returning uint8 on the host.

The generator's state is replicated on every device; each batch of latents is split across the
devices along 'data'. A batch's images do not depend on the others in it (G has no cross-sample
operations), so results agree across device counts up to float rounding. One compile per
(generator graph, resolution, batch shape, mesh): the last batch is padded to the full batch size.
"""

from __future__ import annotations

import functools
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from pggan import media
from pggan.networks import Generator, level_of


class GenerationError(ValueError):
    """Inputs that do not fit the generator (latent or label shapes, batch size)."""


def local_data_mesh() -> Mesh:
    """A 1-D mesh with axis 'data' over this process's devices (Auto axis type)."""
    return jax.make_mesh((jax.local_device_count(),), ("data",), axis_types=(AxisType.Auto,),
                         devices=jax.local_devices())


@functools.partial(jax.jit, static_argnames=("graphdef", "resolution"))
def _generate(graphdef, state, latents, labels, alpha, *, resolution):
    return nnx.merge(graphdef, state)(latents, labels, resolution=resolution, alpha=alpha)


def _check_inputs(generator: Generator, latents: np.ndarray, labels: np.ndarray | None) -> None:
    spec = generator.spec
    if latents.ndim != 2 or latents.shape[1] != spec.latent_size or not len(latents):
        raise GenerationError(f"latents must be [N >= 1, {spec.latent_size}], got shape {latents.shape}")
    if spec.label_size == 0 and labels is not None:
        raise GenerationError("labels were given but the generator is unconditional (label_size = 0)")
    if spec.label_size and (labels is None or labels.shape != (len(latents), spec.label_size)):
        got = None if labels is None else labels.shape
        raise GenerationError(f"this conditional generator needs labels [{len(latents)}, {spec.label_size}], "
                              f"got {got}; pass class labels")


def generate_image_batches(generator: Generator, latents: np.ndarray, labels: np.ndarray | None = None, *,
                           resolution: int, batch_size: int, alpha: float = 1.0, mesh: Mesh | None = None,
                           progress: bool = False) -> Iterator[np.ndarray]:
    """Runs G over latents in batches, streaming uint8 image batches in order.

    Inputs are checked at once (one-line GenerationError / ValueError); G runs as the result is iterated.

    Args:
      generator: a Generator (e.g. the EMA copy from a checkpoint); not modified.
      latents: float [N, latent_size].
      labels: float one-hot [N, label_size] for a conditional generator, else None.
      resolution: active resolution, a power of two in [4, spec.resolution].
      batch_size: images per device step; rounded up to a multiple of the mesh size.
      alpha: fade-in weight of the active resolution in [0, 1] (1 = fully grown).
      mesh: 1-D mesh with axis 'data'; default: all local devices.
      progress: show a tqdm progress bar (unit: images).

    Returns:
      An iterator of uint8 [b, resolution, resolution, num_channels], b = batch_size except maybe
      the last; N images in total.
    """
    latents = np.asarray(latents, np.float32)
    labels = None if labels is None else np.asarray(labels, np.float32)
    _check_inputs(generator, latents, labels)
    level_of(resolution, generator.spec)  # one-line ValueError for an impossible resolution
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise GenerationError(f"batch_size must be a positive integer, got {batch_size!r}")
    mesh = mesh or local_data_mesh()
    if mesh.axis_names != ("data",):
        raise GenerationError(f"generation needs a 1-D mesh with axis 'data', got axes {mesh.axis_names}")
    batch_size = -(-int(batch_size) // mesh.size) * mesh.size
    return _stream(generator, latents, labels, resolution, batch_size, alpha, mesh, progress)


def _stream(generator, latents, labels, resolution, batch_size, alpha, mesh, progress) -> Iterator[np.ndarray]:
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec("data"))
    graphdef, state = nnx.split(generator)
    state = jax.device_put(state, replicated)
    alpha = jax.device_put(jnp.float32(alpha), replicated)
    num = len(latents)
    pending = None  # the previous batch: converted on the host while the devices run the next one
    with tqdm(total=num, unit="img", disable=not progress, desc="generating") as bar:
        for start in range(0, num, batch_size):
            stop = min(start + batch_size, num)
            z, y = _padded(latents, start, stop, batch_size), None
            if labels is not None:
                y = jax.device_put(_padded(labels, start, stop, batch_size), split)
            images = _generate(graphdef, state, jax.device_put(z, split), y, alpha, resolution=resolution)
            if pending is not None:
                yield _to_host(*pending, bar)
            pending = images, stop - start
        yield _to_host(*pending, bar)


def _to_host(images: jax.Array, count: int, bar: tqdm) -> np.ndarray:
    """The first `count` images of a device batch as uint8 on the host; advances the progress bar."""
    images = media.to_uint8(np.asarray(images)[:count])
    bar.update(count)
    return images


def _padded(x: np.ndarray, start: int, stop: int, size: int) -> np.ndarray:
    """Rows start:stop of x, zero-padded to `size` rows."""
    rows = x[start:stop]
    return np.concatenate([rows, np.zeros((size - len(rows),) + x.shape[1:], x.dtype)]) if len(rows) < size else rows


def generate_images(generator: Generator, latents: np.ndarray, labels: np.ndarray | None = None, *,
                    resolution: int, batch_size: int, alpha: float = 1.0, mesh: Mesh | None = None,
                    progress: bool = False) -> np.ndarray:
    """All images at once: uint8 [N, resolution, resolution, num_channels]. See generate_image_batches."""
    batches = list(generate_image_batches(generator, latents, labels, resolution=resolution, batch_size=batch_size,
                                          alpha=alpha, mesh=mesh, progress=progress))
    return np.concatenate(batches)
