"""The image sets an evaluation compares: a prepared dataset's level, a folder of image files, a generator.

Every set streams uint8 batches for `pggan.metrics.MetricSuite` and takes its first `n` images in a
fixed order, so that metrics with smaller counts (SWD, MS-SSIM) use a prefix of what the others use:

  DatasetImages    level R of a prepared dataset, in the order of a seeded permutation of its
                   examples (`np.random.default_rng([seed, 0]).permutation`); 4 and 8 px levels are
                   upscaled to 16x16 (nearest neighbour) as for the generator's images.
  FolderImages     every .jpg/.jpeg/.png/.webp/.bmp file under a folder (recursive, hidden files
                   ignored), the sorted file list in the order of the same seeded permutation; decoded
                   by `pggan.data.imaging.load_image` (EXIF orientation applied, transparency over
                   white, grayscale as RGB) at its own size. Unreadable files are skipped and listed,
                   as the dataset preparation does. Batches of images of several sizes are lists.
  GeneratorImages  a generator at (resolution, alpha); latents float32 N(0, I) from
                   `np.random.default_rng([seed, 1])`, image i of a conditional model of class
                   i mod label_size; 4 and 8 px stages upscaled to 16x16.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
from collections.abc import Iterator

import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from pggan.data import imaging
from pggan.data.dataset import PreparedDataset
from pggan.data.errors import SourceError, UnreadableImageError
from pggan.metrics.swd import MIN_RESOLUTION as METRIC_MIN_RESOLUTION
from pggan.model import networks
from pggan.sampling import generation

MAX_LISTED_SKIPS = 5
_DECODE_THREADS = 8


def metric_resolution(resolution: int) -> int:
    """Side of the images the metrics see: the resolution, or 16 for 4 and 8 px stages."""
    return max(resolution, METRIC_MIN_RESOLUTION)


def upscale_for_metrics(images: np.ndarray) -> np.ndarray:
    """uint8 [N, R, R, C] -> [N, S, S, C] with S = metric_resolution(R), nearest neighbour."""
    factor = metric_resolution(images.shape[1]) // images.shape[1]
    return images if factor == 1 else images.repeat(factor, axis=1).repeat(factor, axis=2)


def image_order(num_examples: int, num_images: int, seed: int) -> np.ndarray:
    """The first min(num_images, num_examples) of a seeded permutation of range(num_examples): int64."""
    return np.random.default_rng([seed, 0]).permutation(num_examples)[:num_images]


def fake_latents(num_images: int, latent_size: int, seed: int) -> np.ndarray:
    """Latents of the fakes: float32 [num_images, latent_size] ~ N(0, I), a fixed seeded stream."""
    return np.random.default_rng([seed, 1]).standard_normal((num_images, latent_size), dtype=np.float32)


def _file_fingerprint(path: str) -> dict:
    stat = os.stat(path)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    """A progress bar in images (with img/s), shown only when enabled and stderr is a terminal."""
    return tqdm(total=total, unit="img", desc=desc, disable=None if enabled else True, leave=False)


class DatasetImages:
    """Level `resolution` of a prepared dataset (see the module docstring)."""

    def __init__(self, dataset: PreparedDataset, resolution: int):
        self.dataset, self.resolution = dataset, resolution
        self.name = dataset.name
        self.num_available = dataset.num_examples
        self.skipped: list[str] = []  # a prepared dataset holds decoded images only
        self.num_skipped = 0

    def identity(self) -> dict:
        """What identifies the images: the dataset's path, metadata, preparation time, and the level."""
        path = os.path.abspath(self.dataset.path)
        d = self.dataset
        return {
            "path": path,
            "name": d.name,
            "num_examples": d.num_examples,
            "resolution": d.resolution,
            "channels": d.channels,
            "num_classes": d.num_classes,
            "levels": list(d.levels),
            "source": d.source,
            "prepared": _file_fingerprint(os.path.join(path, "dataset_info.json")),
            "level": self.resolution,
        }

    def batches(self, num_images: int, batch_size: int, seed: int, progress: bool = False) -> Iterator[np.ndarray]:
        """uint8 [b, S, S, C] batches of the first num_images, S = metric_resolution(resolution)."""
        level = self.dataset.level(self.resolution)
        indices = image_order(self.num_available, num_images, seed)
        with _progress(len(indices), f"reals {self.name} {self.resolution}px", progress) as bar:
            for start in range(0, len(indices), batch_size):
                images, _ = level.read(indices[start : start + batch_size])
                bar.update(len(images))
                yield upscale_for_metrics(images)


class FolderImages:
    """The image files under a folder (see the module docstring).

    Raises SourceError (one line) when the folder does not exist or holds no image file.
    """

    def __init__(self, path: str):
        self.path = os.path.abspath(os.path.expanduser(path))
        self.name = self.path
        if not os.path.isdir(self.path):
            raise SourceError(f"image folder {self.path} does not exist or is not a directory")
        files = []
        for root, dirs, names in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files += [
                os.path.join(root, n)
                for n in names
                if not n.startswith(".") and n.lower().endswith(imaging.IMAGE_EXTENSIONS)
            ]
        if not files:
            raise SourceError(
                f"no images ({', '.join(imaging.IMAGE_EXTENSIONS)}) found under {self.path} (searched recursively)"
            )
        self.files = sorted(files)
        self.num_available = len(self.files)
        self.skipped: list[str] = []
        self.num_skipped = 0

    def identity(self) -> dict:
        """What identifies the images: the folder and every file's name, size and modification time."""
        digest = hashlib.sha256()
        for file in self.files:
            stat = os.stat(file)
            digest.update(f"{os.path.relpath(file, self.path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return {"folder": self.path, "files": len(self.files), "digest": digest.hexdigest()}

    @staticmethod
    def _load(file: str) -> np.ndarray | str:
        try:
            return imaging.load_image(file, 3)
        except UnreadableImageError as error:
            return str(error)

    def batches(
        self, num_images: int, batch_size: int, seed: int, progress: bool = False
    ) -> Iterator[np.ndarray | list[np.ndarray]]:
        """Batches of the first num_images readable files: uint8 [b, H, W, 3], or a list of [H_i, W_i, 3]
        when their sizes differ. Unreadable files are skipped and named in `self.skipped` (the first
        MAX_LISTED_SKIPS; `self.num_skipped` counts all) and replaced by the next files in the order."""
        order = image_order(self.num_available, self.num_available, seed)
        self.skipped, self.num_skipped = [], 0
        wanted = min(num_images, self.num_available)
        position = 0
        with (
            concurrent.futures.ThreadPoolExecutor(_DECODE_THREADS) as pool,
            _progress(wanted, f"images {os.path.basename(self.path)}", progress) as bar,
        ):
            while wanted > 0 and position < len(order):
                chunk = [self.files[i] for i in order[position : position + min(batch_size, wanted)]]
                position += len(chunk)
                images = []
                for file, image in zip(chunk, pool.map(self._load, chunk)):
                    if isinstance(image, str):
                        self.num_skipped += 1
                        if len(self.skipped) < MAX_LISTED_SKIPS:
                            self.skipped.append(f"{os.path.relpath(file, self.path)}: {image}")
                    else:
                        images.append(image)
                if not images:
                    continue
                wanted -= len(images)
                bar.update(len(images))
                yield np.stack(images) if len({i.shape for i in images}) == 1 else images
        if self.num_skipped == self.num_available:
            raise SourceError(
                f"none of the {self.num_available} images under {self.path} could be read (first: {self.skipped[0]})"
            )


class GeneratorImages:
    """A generator's images at (resolution, alpha) (see the module docstring)."""

    def __init__(self, generator: networks.Generator, resolution: int, alpha: float, mesh: Mesh | None = None):
        self.generator, self.resolution, self.alpha, self.mesh = generator, resolution, alpha, mesh
        self.name = f"generator {resolution}px"

    def batches(self, num_images: int, batch_size: int, seed: int, progress: bool = False) -> Iterator[np.ndarray]:
        """uint8 [b, S, S, C] batches of num_images fakes, S = metric_resolution(resolution)."""
        sampler = generation.Sampler(
            self.generator, resolution=self.resolution, alpha=self.alpha, batch_size=batch_size, mesh=self.mesh
        )
        latents = fake_latents(num_images, self.generator.spec.latent_size, seed)
        with _progress(len(latents), f"fakes {self.resolution}px", progress) as bar:
            for batch in sampler.image_batches(latents):
                bar.update(len(batch))
                yield upscale_for_metrics(batch)
