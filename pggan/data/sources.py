"""Image sources a dataset can be prepared from: a folder of images, the embedded digits, synthetic
images (here), and tensorflow-datasets catalog datasets (`catalog.py`); `source_specs.make_source`
builds one from its spec.

A source lists its items (JSON-able keys, in a deterministic order) and loads one item at a time as
`(image uint8 [R, R, C], label int)`, already squared and resized to the source's resolution R;
`label` is -1 for unlabeled sources. Sources are small picklable descriptions: they open files lazily,
so the preparation can load items in worker processes.

Source specs (the `--source` flag of tools/prepare_dataset.py and `dataset.source` in configs):
  folder:<path>       a folder of images, searched recursively (jpg, png, webp, bmp)
  digits              the quickstart: the 1797 handwritten 8x8 UCI digits shipped with pggan, as 32x32 RGB
  synthetic           procedural shapes on gradients at any resolution, labels 0..3 (benchmarks)
  tfds:<name>[/<cfg>] a tensorflow-datasets catalog dataset, e.g. tfds:celeb_a_hq/1024,
                      tfds:lsun/bedroom, tfds:celeb_a, tfds:cifar10, tfds:mnist
"""

from __future__ import annotations

import abc
import functools
import os
import re
from typing import Any

import numpy as np
from PIL import Image

from pggan.data import imaging
from pggan.data.errors import SourceError

UNLABELED = -1
DIGITS_RESOLUTION = 32
DIGITS_MARGIN = 2
# One colour per digit class (Tableau 10), so a grid of samples shows the class mix at a glance.
DIGIT_COLOURS = np.array(
    [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (188, 189, 34),
        (23, 190, 207),
        (250, 250, 250),
    ],
    np.float32,
)
SYNTHETIC_SHAPES = ("disk", "square", "diamond", "ring")


class Source(abc.ABC):
    """An image source. Subclasses set resolution, channels, num_classes and class_names."""

    resolution: int
    channels: int
    num_classes: int = 0  # 0: unlabeled, every label is -1
    class_names: tuple[str, ...] = ()

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able settings that identify the prepared result (stored in the dataset's metadata)."""

    @abc.abstractmethod
    def default_name(self) -> str:
        """The dataset name used when the user gives none (a valid tfds name: [a-z0-9_])."""

    @abc.abstractmethod
    def list_items(self) -> list:
        """All item keys (JSON-able str or int), in a deterministic order; may be slow (scans)."""

    @abc.abstractmethod
    def load(self, item) -> tuple[np.ndarray, int]:
        """(image uint8 [R, R, C], label in [0, num_classes) or -1); raises UnreadableImageError."""

    def item_name(self, item) -> str:
        """How a skipped item is named in the summary."""
        return str(item)

    def __getstate__(self):
        """Pickles without caches (attributes starting with '_' come back as None in workers)."""
        return {key: None if key.startswith("_") else value for key, value in self.__dict__.items()}


def dataset_name_from(text: str) -> str:
    """A valid tfds dataset name ([a-z][a-z0-9_]*) derived from free text."""
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return name if name[:1].isalpha() else f"ds_{name}"


class FolderSource(Source):
    """Every jpg/jpeg/png/webp/bmp under `path` (recursive, hidden files ignored), squared and resized.

    crop: 'center' or 'pad' (see imaging.square_and_resize). channels: 3 (RGB) or 1 (grayscale).
    labels_from_subfolders: label each image by its top-level subfolder (sorted names -> 0, 1, ...).
    """

    def __init__(
        self,
        path: str,
        resolution: int,
        *,
        crop: str = "center",
        channels: int = 3,
        labels_from_subfolders: bool = False,
    ):
        if crop not in imaging.CROP_MODES:
            raise SourceError(f"crop must be one of {imaging.CROP_MODES}, got {crop!r}")
        if channels not in (1, 3):
            raise SourceError(f"channels must be 1 or 3, got {channels}")
        self.path = os.path.abspath(os.path.expanduser(path))
        self.resolution = resolution
        self.crop = crop
        self.channels = channels
        self.labels_from_subfolders = labels_from_subfolders
        self._items = None
        if labels_from_subfolders:
            self.class_names = tuple(sorted({item.split("/")[0] for item in self.list_items()}))
            self.num_classes = len(self.class_names)

    def describe(self):
        return {
            "kind": "folder",
            "path": self.path,
            "resolution": self.resolution,
            "crop": self.crop,
            "channels": self.channels,
            "labels_from_subfolders": self.labels_from_subfolders,
        }

    def default_name(self):
        return dataset_name_from(os.path.basename(self.path) or "images")

    def list_items(self):
        if self._items is None:
            self._items = self._scan()
        return self._items

    def _scan(self) -> list[str]:
        if not os.path.isdir(self.path):
            raise SourceError(f"image folder {self.path} does not exist or is not a directory")
        items = []
        for root, dirs, files in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for file in files:
                if not file.startswith(".") and file.lower().endswith(imaging.IMAGE_EXTENSIONS):
                    items.append(os.path.relpath(os.path.join(root, file), self.path).replace(os.sep, "/"))
        if not items:
            raise SourceError(
                f"no images ({', '.join(imaging.IMAGE_EXTENSIONS)}) found under {self.path}"
                " (searched recursively); point --source=folder:<path> at your images"
            )
        if self.labels_from_subfolders and any("/" not in item for item in items):
            loose = next(item for item in items if "/" not in item)
            raise SourceError(
                f"labels_from_subfolders needs every image inside a class subfolder, but "
                f"{loose} is directly in {self.path}"
            )
        return sorted(items)

    def load(self, item):
        image = imaging.load_image(os.path.join(self.path, item), self.channels)
        label = self.class_names.index(item.split("/")[0]) if self.labels_from_subfolders else UNLABELED
        return imaging.square_and_resize(image, self.resolution, self.crop), label


DIGITS_FILE = os.path.join(os.path.dirname(__file__), "digits.npz")  # source and licence: DIGITS.md beside it


@functools.lru_cache(maxsize=1)
def shipped_digits() -> tuple[np.ndarray, np.ndarray]:
    """The handwritten digits shipped with pggan: images uint8 [1797, 8, 8] in 0..16, labels uint8 [1797]."""
    with np.load(DIGITS_FILE, allow_pickle=False) as data:
        return data["images"], data["labels"]


class DigitsSource(Source):
    """The quickstart dataset: 1797 handwritten digits (UCI, shipped with pggan: no download).

    Each 8x8 digit is upscaled to 28x28 with a smooth bicubic filter, framed by 2 black pixels (like
    MNIST) and drawn in its class colour (DIGIT_COLOURS) on black: uint8 [32, 32, 3]. Labels 0..9.
    """

    resolution = DIGITS_RESOLUTION
    channels = 3
    num_classes = 10
    class_names = tuple(str(d) for d in range(10))

    def describe(self):
        return {"kind": "digits", "resolution": self.resolution}

    def default_name(self):
        return "digits"

    def list_items(self):
        return list(range(len(shipped_digits()[1])))

    def load(self, item):
        images, labels = shipped_digits()
        ink = Image.fromarray((images[item] / 16.0).astype(np.float32), "F")
        inner = self.resolution - 2 * DIGITS_MARGIN
        ink = np.clip(np.asarray(ink.resize((inner, inner), Image.Resampling.BICUBIC)), 0.0, 1.0)
        ink = np.pad(ink, DIGITS_MARGIN)
        label = int(labels[item])
        return np.rint(ink[:, :, None] * DIGIT_COLOURS[label]).astype(np.uint8), label


def synthetic_image(seed: int, index: int, resolution: int) -> tuple[np.ndarray, int]:
    """A procedural image: one anti-aliased shape (the label) on a two-colour linear gradient.

    Deterministic in (seed, index); costs a few vectorised passes over the pixels.
    Returns (uint8 [resolution, resolution, 3], label in [0, len(SYNTHETIC_SHAPES))).
    """
    rng = np.random.default_rng([seed, index])
    label = int(rng.integers(len(SYNTHETIC_SHAPES)))
    colour_a, colour_b, colour_shape = rng.uniform(0, 255, (3, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    cy, cx = rng.uniform(0.3, 0.7, 2)
    size = rng.uniform(0.12, 0.28)
    grid = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution
    dy, dx = grid[:, None] - np.float32(cy), grid[None, :] - np.float32(cx)
    ramp = np.clip(0.5 + dx * np.cos(angle) + dy * np.sin(angle), 0, 1)[:, :, None]
    if label == 0:
        distance = np.sqrt(dx * dx + dy * dy) - size
    elif label == 1:
        distance = np.maximum(np.abs(dx), np.abs(dy)) - size
    elif label == 2:
        distance = (np.abs(dx) + np.abs(dy)) * np.float32(0.7071) - size * 0.8
    else:
        distance = np.abs(np.sqrt(dx * dx + dy * dy) - size) - size * 0.3
    coverage = np.clip(0.5 - distance * resolution, 0, 1)[:, :, None]
    background = colour_a + (colour_b - colour_a) * ramp
    image = background + (colour_shape - background) * coverage
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


class SyntheticSource(Source):
    """`num_examples` procedural images at any power-of-two resolution (see synthetic_image)."""

    channels = 3
    num_classes = len(SYNTHETIC_SHAPES)
    class_names = SYNTHETIC_SHAPES

    def __init__(self, resolution: int, num_examples: int, seed: int = 0):
        if num_examples < 1:
            raise SourceError(f"synthetic needs num_examples >= 1, got {num_examples}")
        self.resolution = resolution
        self.num_examples = num_examples
        self.seed = seed

    def describe(self):
        return {
            "kind": "synthetic",
            "resolution": self.resolution,
            "num_examples": self.num_examples,
            "seed": self.seed,
        }

    def default_name(self):
        return f"synthetic_{self.resolution}"

    def list_items(self):
        return list(range(self.num_examples))

    def load(self, item):
        return synthetic_image(self.seed, item, self.resolution)
