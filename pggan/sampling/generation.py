"""Image generation: batched and sharded over the devices of a 1-D 'data' mesh, and sampling a checkpoint.

Batched generation (`generate_image_batches`): the generator's state is replicated on every device;
each batch of latents is split across the devices along 'data'. A batch's images do not depend on the
others in it (G has no cross-sample operations), so results agree across device counts up to float
rounding. One compile per (generator graph, resolution, batch shape, mesh): the last batch is padded
to the full batch size.

Sampling a checkpoint (`Sampler` with truncation and labels; `sample_grid`, `save_seed_images`,
`video_frames`, `stage_progress_frames`): what tools/generate.py does, one function per output.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from tqdm import tqdm

from pggan import checkpoint, network_sources, parallel
from pggan.errors import UserError
from pggan.model.networks import Generator, ModelSpec, level_of
from pggan.sampling import latent_space, media


class GenerationError(UserError):
    """Inputs that do not fit the generator (latent or label shapes, batch size)."""


def _run_generator(graphdef, state, latents, labels, alpha, *, resolution):
    return nnx.merge(graphdef, state)(latents, labels, resolution=resolution, alpha=alpha)


def generator_program(platform: str):
    """G's call, jitted for devices of `platform` (one compile per graph, resolution and batch shape)."""
    return parallel.jit_for(platform, _run_generator, static_argnames=("graphdef", "resolution"))


def _check_inputs(generator: Generator, latents: np.ndarray, labels: np.ndarray | None) -> None:
    spec = generator.spec
    if latents.ndim != 2 or latents.shape[1] != spec.latent_size or not len(latents):
        raise GenerationError(f"latents must be [N >= 1, {spec.latent_size}], got shape {latents.shape}")
    if spec.label_size == 0 and labels is not None:
        raise GenerationError("labels were given but the generator is unconditional (label_size = 0)")
    if spec.label_size and (labels is None or labels.shape != (len(latents), spec.label_size)):
        got = None if labels is None else labels.shape
        raise GenerationError(
            f"this conditional generator needs labels [{len(latents)}, {spec.label_size}], got {got}; pass class labels"
        )


def generate_image_batches(
    generator: Generator,
    latents: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    resolution: int,
    batch_size: int,
    alpha: float = 1.0,
    mesh: Mesh | None = None,
    progress: bool = False,
) -> Iterator[np.ndarray]:
    """Runs G over latents in batches, streaming uint8 image batches in order.

    Inputs are checked at once (one-line GenerationError / ValueError); G runs as the result is iterated.

    Args:
      generator: a Generator (e.g. the EMA copy from a checkpoint); not modified.
      latents: float [N, latent_size].
      labels: float one-hot [N, label_size] for a conditional generator, else None.
      resolution: active resolution, a power of two in [4, spec.resolution].
      batch_size: images per device step; rounded up to a multiple of the mesh size.
      alpha: fade-in weight of the active resolution in [0, 1] (1 = fully grown).
      mesh: 1-D mesh with axis 'data' (`parallel.make_mesh`); default: this process's devices.
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
    mesh = mesh or parallel.make_mesh(jax.local_devices())
    if mesh.axis_names != (parallel.DATA_AXIS,):
        raise GenerationError(f"generation needs a 1-D mesh with axis 'data', got axes {mesh.axis_names}")
    batch_size = -(-int(batch_size) // mesh.size) * mesh.size
    return _stream(generator, latents, labels, resolution, batch_size, alpha, mesh, progress)


def _stream(generator, latents, labels, resolution, batch_size, alpha, mesh, progress) -> Iterator[np.ndarray]:
    replicated, split = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    generate = generator_program(mesh.devices.flat[0].platform)
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
            images = generate(graphdef, state, jax.device_put(z, split), y, alpha, resolution=resolution)
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


def generate_images(
    generator: Generator,
    latents: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    resolution: int,
    batch_size: int,
    alpha: float = 1.0,
    mesh: Mesh | None = None,
    progress: bool = False,
) -> np.ndarray:
    """All images at once: uint8 [N, resolution, resolution, num_channels]. See generate_image_batches."""
    batches = list(
        generate_image_batches(
            generator,
            latents,
            labels,
            resolution=resolution,
            batch_size=batch_size,
            alpha=alpha,
            mesh=mesh,
            progress=progress,
        )
    )
    return np.concatenate(batches)


# ----------------------------------------------------------------------------------------------
# Sampling a checkpoint: grids, one image per seed, video frames, stage-by-stage progress

DEFAULT_BATCH_PER_DEVICE = 8


def _check_sampler_options(psi: float, batch_size: int) -> None:
    if not 0.0 <= psi <= 1.0:
        raise latent_space.SamplingError(f"truncation psi must be in [0, 1] (1 = no truncation), got {psi}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 0:
        raise GenerationError(f"batch_size must be a non-negative integer (0 = automatic), got {batch_size!r}")


class Sampler:
    """A generator ready to sample at one resolution and fade-in: latents -> uint8 images.

    Adds the truncation trick (`sampling.truncate`) and class labels to `generate_image_batches`.
    A conditional model's image gets class `label` when one is set, else the default class its
    caller gives (image i of a grid: i mod label_size, as in the training snapshots).

    Args:
      generator: the Generator to sample (not modified).
      resolution: active resolution, a power of two in [4, spec.resolution].
      alpha: fade-in weight of that resolution in [0, 1].
      psi: truncation in [0, 1] (1 = none, 0 = the mean image).
      label: class id in [0, label_size) for every image, or None; only for conditional models.
      batch_size: images per device step; 0 = DEFAULT_BATCH_PER_DEVICE per device.
      mesh: 1-D 'data' mesh; default: this process's devices.
    """

    def __init__(
        self,
        generator: Generator,
        *,
        resolution: int,
        alpha: float = 1.0,
        psi: float = 1.0,
        label: int | None = None,
        batch_size: int = 0,
        mesh: Mesh | None = None,
    ):
        _check_sampler_options(psi, batch_size)
        try:
            level_of(resolution, generator.spec)
        except ValueError as e:
            raise GenerationError(str(e)) from None
        if label is not None:
            latent_space.one_hot_labels([label], generator.spec.label_size)  # unconditional model, out of range
        self.generator, self.resolution, self.alpha, self.psi, self.label = generator, resolution, alpha, psi, label
        self.mesh = mesh or parallel.make_mesh(jax.local_devices())
        self.batch_size = batch_size or DEFAULT_BATCH_PER_DEVICE * self.mesh.size

    @classmethod
    def from_checkpoint(
        cls, workdir: str, *, step: int | None = None, resolution: int | None = None, network: str = "ema", **options
    ) -> tuple[Sampler, dict]:
        """Loads a generator (see `network_sources.load`: `workdir` may also be a run's checkpoints folder, a
        .pggan export or an official .pkl) at the resolution and fade-in it was trained at. Options are checked
        before the (slow) load. Returns (sampler, meta with at least 'resolution', 'alpha' and 'step')."""
        _check_sampler_options(options.get("psi", 1.0), options.get("batch_size", 0))
        if network not in checkpoint.NETWORK_ITEMS:
            raise GenerationError(f"--network must be one of {sorted(checkpoint.NETWORK_ITEMS)}, got {network!r}")
        item = checkpoint.NETWORK_ITEMS[network]
        loaded = network_sources.load(workdir, [item], step=step, resolution=resolution)
        meta = {**loaded.meta, "resolution": loaded.resolution, "alpha": loaded.alpha}
        return cls(loaded.generator(item), resolution=loaded.resolution, alpha=loaded.alpha, **options), meta

    @property
    def spec(self) -> ModelSpec:
        return self.generator.spec

    def class_ids(self, default: Sequence[int]) -> np.ndarray | None:
        """The class of each image, int [N]: `label` if set, else default mod label_size; None if unconditional."""
        if not self.spec.label_size:
            return None
        default = np.asarray(default, np.int64)
        return np.full(len(default), self.label) if self.label is not None else default % self.spec.label_size

    def image_batches(
        self, latents: np.ndarray, default_classes: Sequence[int] | None = None, *, progress: bool = False
    ) -> Iterator[np.ndarray]:
        """Images of latents float [N, latent_size], streamed as uint8 [b, R, R, C] batches in order.

        default_classes: int [N] for a conditional model (see class_ids); default 0, 1, ..., N - 1.
        """
        latents = np.asarray(latents, np.float32)
        classes = self.class_ids(np.arange(len(latents)) if default_classes is None else default_classes)
        labels = None if classes is None else latent_space.one_hot_labels(classes, self.spec.label_size)
        latents, labels = latent_space.truncate(latents, labels, self.psi, self.spec)
        return generate_image_batches(
            self.generator,
            latents,
            labels,
            resolution=self.resolution,
            batch_size=self.batch_size,
            alpha=self.alpha,
            mesh=self.mesh,
            progress=progress,
        )

    def images(
        self, latents: np.ndarray, default_classes: Sequence[int] | None = None, *, progress: bool = False
    ) -> np.ndarray:
        """All images at once: uint8 [N, R, R, C]. See image_batches."""
        return np.concatenate(list(self.image_batches(latents, default_classes, progress=progress)))


def _zoomed(image: np.ndarray, zoom: int) -> np.ndarray:
    """uint8 [H, W, C] -> [H * zoom, W * zoom, C], nearest neighbour."""
    if isinstance(zoom, bool) or not isinstance(zoom, (int, np.integer)) or zoom < 1:
        raise GenerationError(f"zoom must be a positive integer, got {zoom!r}")
    return image if zoom == 1 else media.fit_to_frame(image, image.shape[0] * zoom, image.shape[1] * zoom)


def sample_grid(
    sampler: Sampler, seed: int, rows: int, cols: int, *, zoom: int = 1, progress: bool = False
) -> np.ndarray:
    """The rows x cols sample grid of `seed` (`sampling.grid_latents`, filled row by row).

    Returns uint8 [rows * R * zoom, cols * R * zoom, C], R = sampler.resolution.
    """
    images = sampler.images(latent_space.grid_latents(seed, rows * cols, sampler.spec.latent_size), progress=progress)
    return _zoomed(media.make_grid(images, rows, cols), zoom)


def seed_image_filename(seed: int, class_id: int | None = None) -> str:
    """File name of the image of one seed: 'seed000042.png', or 'seed000042-class3.png' with a class."""
    return f"seed{seed:06d}.png" if class_id is None else f"seed{seed:06d}-class{class_id}.png"


def seed_images(sampler: Sampler, seeds: Sequence[int], *, progress: bool = False) -> Iterator[np.ndarray]:
    """The image of each seed, uint8 [R, R, C], in seed order, generated batch by batch as consumed.

    The image of seed s comes from `latent_space.latents_for_seeds([s])` (and, for a conditional model
    without a fixed label, class s mod label_size), so it does not depend on the other seeds.
    """
    seeds = list(seeds)
    latents = latent_space.latents_for_seeds(seeds, sampler.spec.latent_size)
    return (image for batch in sampler.image_batches(latents, seeds, progress=progress) for image in batch)


def save_seed_images(
    sampler: Sampler, seeds: Sequence[int], outdir: str, *, zoom: int = 1, progress: bool = False
) -> list[str]:
    """Writes one PNG per seed (`seed_images`) into outdir (created if missing), named by `seed_image_filename`.

    Images are uint8 [R * zoom, R * zoom, C]. Returns the paths written, in seed order.
    """
    seeds = list(seeds)
    classes = sampler.class_ids(seeds)
    paths = [
        os.path.join(outdir, seed_image_filename(seed, None if classes is None else int(classes[i])))
        for i, seed in enumerate(seeds)
    ]
    for image, path in zip(seed_images(sampler, seeds, progress=progress), paths):
        media.save_png(_zoomed(image, zoom), path)
    return paths


def video_frames(
    sampler: Sampler, latents: np.ndarray, rows: int, cols: int, *, zoom: int = 0, progress: bool = False
) -> Iterator[np.ndarray]:
    """Frames of a video of rows x cols latent walks, generated batch by batch as they are consumed.

    Args:
      latents: float [T, rows * cols, latent_size] (`sampling.smooth_random_walk` or `keyframe_walk`);
        cell i of every frame has the default class i (see Sampler.class_ids).
      zoom: integer upscaling of the frames (`media.video_zoom`; 0 = automatic).
      progress: show a progress bar (unit: images).

    Returns:
      An iterator of T frames uint8 [rows * R * z, cols * R * z, C], z the zoom used.
    """
    latents = np.asarray(latents, np.float32)
    if latents.ndim != 3 or latents.shape[1] != rows * cols:
        raise GenerationError(f"video latents must be [frames, {rows * cols}, latent_size], got {latents.shape}")
    num_frames, cells, latent_size = latents.shape
    zoom = media.video_zoom(rows * sampler.resolution, cols * sampler.resolution, zoom)
    batches = sampler.image_batches(
        latents.reshape(-1, latent_size), np.tile(np.arange(cells), num_frames), progress=progress
    )
    return (_zoomed(grid, zoom) for grid in media.grids_from_batches(batches, rows, cols))


def progress_checkpoint_steps(workdir: str, network: str = "ema") -> list[int]:
    """Steps of a training-progress video from checkpoints: the last checkpoint of every finished
    resolution stage, then the latest checkpoint (if it is not one of them). Damaged checkpoints are
    left out with a warning (`checkpoint.CheckpointReader.intact`); CheckpointError if none is left."""
    with checkpoint.CheckpointReader(workdir) as reader:
        latest = reader.select(network=network)
        return reader.intact(sorted(set(reader.stage_final_steps()) | {latest}), network)


def stage_progress_frames(
    workdir: str,
    steps: Sequence[int],
    *,
    seed: int,
    rows: int,
    cols: int,
    network: str = "ema",
    frames_per_step: int = 1,
    zoom: int = 0,
    progress: bool = False,
    **options,
) -> Iterator[np.ndarray]:
    """Frames of a training-progress video rendered from checkpoints (one checkpoint loaded at a time).

    Every checkpoint renders the same rows x cols grid of `seed` at its own resolution and fade-in;
    grids are upscaled (nearest neighbour) to the final resolution R, then by the video zoom z.
    progress: show a progress bar (unit: checkpoints). options: Sampler options (psi, label, batch_size, mesh).

    Yields:
      len(steps) * frames_per_step frames uint8 [rows * R * z, cols * R * z, C].
    """
    frame_size = None
    for step in tqdm(steps, unit="ckpt", disable=not progress, desc="checkpoints"):
        sampler, _ = Sampler.from_checkpoint(workdir, step=step, network=network, **options)
        if frame_size is None:
            final = sampler.spec.resolution
            z = media.video_zoom(rows * final, cols * final, zoom)
            frame_size = (rows * final * z, cols * final * z)
        frame = media.fit_to_frame(sample_grid(sampler, seed, rows, cols), *frame_size)
        for _ in range(frames_per_step):
            yield frame
