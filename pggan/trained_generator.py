"""The Python API of a trained generator: load it from anywhere, then images from seeds, latents or walks.

    import pggan
    G = pggan.load_generator("runs/quickstart")           # workdir, checkpoint dir, .pggan export or official .pkl
    images = G.generate(seeds=[1, 2, 3], truncation=0.7)   # uint8 [3, R, R, C]

Built on the same functions as pggan-generate (tools/generate.py): the image of a seed is the PNG that
`pggan-generate --seeds=...` writes for it, byte for byte (at the same batch size).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pggan.model import networks
from pggan.sampling import generation, latent_space


class TrainedGenerator:
    """A loaded generator at the stage it was trained to (`resolution`, fade-in `alpha`).

    Attributes: resolution (int, image side R), latent_size, label_size (0 = unconditional),
    num_channels, alpha, spec (the ModelSpec), meta (where it came from: 'kind', 'step', ...), module (the
    Flax NNX Generator: module(z, labels, resolution=R, alpha=alpha) -> float32 images in about [-1, 1]).
    batch_size: images per device step (0 = automatic, as in pggan-generate).
    """

    def __init__(
        self, generator: networks.Generator, *, resolution: int, alpha: float, meta: dict, batch_size: int = 0
    ):
        self.module, self.spec = generator, generator.spec
        self.resolution, self.alpha, self.meta = resolution, alpha, meta
        self.latent_size, self.label_size = self.spec.latent_size, self.spec.label_size
        self.num_channels = self.spec.num_channels
        self.batch_size = batch_size

    def sampler(self, truncation: float = 1.0, label: int | None = None) -> generation.Sampler:
        """The `generation.Sampler` these images come from (truncation psi in [0, 1], one class or None)."""
        return generation.Sampler(
            self.module,
            resolution=self.resolution,
            alpha=self.alpha,
            psi=truncation,
            label=label,
            batch_size=self.batch_size,
        )

    def _class_ids(self, labels: int | Sequence[int] | None, count: int) -> tuple[int | None, Sequence[int] | None]:
        """(fixed label, per-image classes) of a `labels` argument: one int, one int per image, or None."""
        if labels is None or isinstance(labels, (int, np.integer)):
            return labels, None
        classes = np.asarray(labels)
        if classes.shape != (count,):
            raise generation.GenerationError(f"labels must be one class or one per image ({count}), got {labels!r}")
        latent_space.one_hot_labels(classes, self.label_size)  # refuses an unconditional model, out-of-range ids
        return None, classes

    def generate(
        self, seeds: Sequence[int], truncation: float = 1.0, labels: int | Sequence[int] | None = None
    ) -> np.ndarray:
        """The images of seeds: uint8 [len(seeds), R, R, C].

        labels: for a conditional model, one class for every image or one per seed; default seed mod
        label_size (as pggan-generate). An unconditional model refuses labels.
        """
        seeds = list(seeds)
        label, classes = self._class_ids(labels, len(seeds))
        sampler = self.sampler(truncation, label)
        if classes is None:
            return np.stack(list(generation.seed_images(sampler, seeds)))
        return sampler.images(latent_space.latents_for_seeds(seeds, self.latent_size), classes)

    def generate_from_latents(
        self, z: np.ndarray, truncation: float = 1.0, labels: int | Sequence[int] | None = None
    ) -> np.ndarray:
        """Images of latents z float32 [N, latent_size] (e.g. a projection's .npy): uint8 [N, R, R, C].

        labels as in `generate`; default classes 0, 1, ..., N - 1 mod label_size.
        """
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_size:
            raise generation.GenerationError(f"latents must be [N, {self.latent_size}], got shape {z.shape}")
        label, classes = self._class_ids(labels, len(z))
        return self.sampler(truncation, label).images(z, classes)

    def interpolate(
        self,
        seeds: Sequence[int],
        num_frames: int,
        *,
        loop: bool = True,
        truncation: float = 1.0,
        label: int | None = None,
    ) -> np.ndarray:
        """The frames of a keyframe video (pggan-generate --video --keyframes with a 1x1 grid, no zoom):
        spherical interpolation through the images of `seeds`, back to the first with `loop`.

        Returns uint8 [num_frames, R, R, C]; frame `latent_space.keyframe_indices(...)[k]` is seed k's image.
        """
        latents = latent_space.keyframe_walk(list(seeds), num_frames, self.latent_size, loop=loop)
        return np.stack(list(generation.video_frames(self.sampler(truncation, label), latents, 1, 1, zoom=1)))

    def __repr__(self) -> str:
        return (
            f"TrainedGenerator({self.resolution}x{self.resolution}x{self.num_channels}, latent {self.latent_size}, "
            f"labels {self.label_size}, alpha {self.alpha:g}, from {self.meta.get('kind')})"
        )


def load_generator(
    path: str, *, step: int | None = None, resolution: int | None = None, network: str = "ema", batch_size: int = 0
) -> TrainedGenerator:
    """A trained generator from a run's workdir, its checkpoints folder, a .pggan export or an official .pkl.

    step, resolution: which checkpoint of a run (default the latest intact one); network: 'ema' (the
    smoothed generator, best samples) or 'raw'. Raises a one-line `pggan.errors.UserError` for anything
    that cannot be loaded.
    """
    sampler, meta = generation.Sampler.from_checkpoint(
        path, step=step, resolution=resolution, network=network, batch_size=batch_size
    )
    return TrainedGenerator(
        sampler.generator, resolution=sampler.resolution, alpha=sampler.alpha, meta=meta, batch_size=batch_size
    )
