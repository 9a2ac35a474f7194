"""tensorflow-datasets catalog datasets as image sources, mapped to PGGAN's conventions.

The catalog dataset is downloaded and prepared by tfds itself (in array_record format, so that it can
be read by index without TensorFlow), then each example is mapped to a square image:
  celeb_a_hq/<res>  the manually downloaded CelebA-HQ at <res> (default config 1024), unlabeled
  lsun/<category>   centre crop to a square, Lanczos resize to 256, unlabeled
  celeb_a           all 202,599 images (train+validation+test), official crop of 128x128 around
                    (cx=89, cy=121), unlabeled
  cifar10           the 50,000 training images, 32x32, labels 0..9
  mnist             the 60,000 training digits, 28x28 padded with 2 black pixels to 32x32,
                    1 channel, labels 0..9
  anything else     the 'train' split's 'image' feature, centre-cropped and resized to --resolution;
                    labels from a 'label' class feature when there is one
Preparing most catalog datasets needs TensorFlow (the `[prepare]` extra); reading them does not.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from pggan.data import imaging
from pggan.data.errors import MissingDependencyError, SourceError
from pggan.data.sources import UNLABELED, Source, dataset_name_from


def _celeba_official_crop(image: np.ndarray) -> np.ndarray:
    """CelebA's aligned 218x178 faces -> the 128x128 square around (cx=89, cy=121) (official tool)."""
    cx, cy = 89, 121
    if image.shape[0] < cy + 64 or image.shape[1] < cx + 64:
        raise SourceError(f"celeb_a images must be 218x178, got {image.shape[0]}x{image.shape[1]}")
    return image[cy - 64 : cy + 64, cx - 64 : cx + 64]


def _pad_to_32(image: np.ndarray) -> np.ndarray:
    """MNIST's 28x28 digits -> 32x32 with a 2-pixel black border (official tool)."""
    return np.pad(image, ((2, 2), (2, 2), (0, 0)))


@dataclasses.dataclass(frozen=True)
class CatalogRule:
    """How one catalog dataset becomes square images: splits used, square crop, natural resolution."""

    splits: tuple[str, ...] = ("train",)
    to_square: object = None  # image uint8 [H, W, C] -> square uint8; None: centre crop
    resolution: int | None = None  # None: the catalog image size when square, else --resolution


CATALOG_RULES = {
    "celeb_a_hq": CatalogRule(to_square=lambda image: image),
    "lsun": CatalogRule(resolution=256),
    "celeb_a": CatalogRule(splits=("train", "validation", "test"), to_square=_celeba_official_crop, resolution=128),
    "cifar10": CatalogRule(to_square=lambda image: image, resolution=32),
    "mnist": CatalogRule(to_square=_pad_to_32, resolution=32),
}


def _open_builder(name: str, data_dir: str | None):
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise SourceError(
            f"tfds:{name} is not in the tensorflow-datasets catalog: {str(error).splitlines()[0]}"
        ) from error


class CatalogSource(Source):
    """A tfds catalog dataset (`name` as in tfds.builder, e.g. 'lsun/bedroom'), see the module doc."""

    def __init__(
        self, name: str, *, resolution: int | None = None, data_dir: str | None = None, manual_dir: str | None = None
    ):
        self.name = name
        self.data_dir = data_dir
        self.manual_dir = manual_dir
        self.rule = CATALOG_RULES.get(name.split("/")[0], CatalogRule())
        builder = _open_builder(name, data_dir)
        features = builder.info.features
        if "image" not in features:
            raise SourceError(f"tfds:{name} has no 'image' feature, so it cannot be used as an image source")
        shape = features["image"].shape
        self.channels = shape[-1] if shape[-1] in (1, 3) else 3
        natural = self.rule.resolution or (shape[0] if shape[0] == shape[1] and shape[0] else None)
        self.resolution = resolution or natural
        if self.resolution is None or not imaging.is_power_of_two(self.resolution):
            raise SourceError(f"tfds:{name} has no natural power-of-two resolution: pass one, e.g. --resolution=256")
        label = features["label"] if "label" in features else None
        if isinstance(label, tfds.features.ClassLabel):
            self.num_classes = label.num_classes
            self.class_names = tuple(label.names)
        self._builder = builder
        self._splits = None  # [(split name, data source)], opened lazily (not picklable)

    def describe(self):
        return {"kind": "tfds", "name": self.name, "resolution": self.resolution}

    def default_name(self):
        return dataset_name_from(f"{self.name}_pggan")

    def _prepare_catalog(self):
        """Lets tfds download and prepare the catalog dataset (array_record) if it has not yet."""
        config = tfds.download.DownloadConfig(manual_dir=self.manual_dir)
        try:
            self._builder.download_and_prepare(file_format="array_record", download_config=config)
        except (ImportError, ModuleNotFoundError) as error:
            if "tensorflow" not in str(error).lower():
                raise
            raise MissingDependencyError(
                f"preparing tfds:{self.name} needs TensorFlow: pip install "
                f"'pggan[prepare]' (tensorflow-cpu), then run again"
            ) from error
        except AssertionError as error:  # tfds' way of saying the manual download is missing
            raise SourceError(
                f"tfds:{self.name} needs a manual download: {str(error).splitlines()[0]} "
                f"(pass its folder as --manual_dir)"
            ) from error

    def _data_sources(self):
        if self._splits is None:
            builder = self._builder or _open_builder(self.name, self.data_dir)
            try:
                self._splits = [(split, builder.as_data_source(split=split)) for split in self.rule.splits]
            except (NotImplementedError, ValueError, KeyError) as error:
                raise SourceError(
                    f"tfds:{self.name} in {builder.data_dir} cannot be read by index "
                    f"({str(error).splitlines()[0]}); it must be prepared as array_record: "
                    f"delete {builder.data_dir} and run again"
                ) from error
        return self._splits

    def list_items(self):
        self._prepare_catalog()
        total = sum(len(source) for _, source in self._data_sources())
        return list(range(total))

    def _locate(self, item: int):
        for split, source in self._data_sources():
            if item < len(source):
                return split, source, item
            item -= len(source)
        raise IndexError(item)

    def item_name(self, item):
        split, _, index = self._locate(item)
        return f"{self.name}:{split}[{index}]"

    def load(self, item):
        _, source, index = self._locate(item)
        example = source[index]
        image = np.asarray(example["image"], np.uint8)
        if image.ndim == 2:
            image = image[:, :, None]
        if image.shape[-1] != self.channels:
            image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[:, :, :3]
        square = self.rule.to_square(image) if self.rule.to_square else image
        label = int(example["label"]) if self.num_classes else UNLABELED
        return imaging.square_and_resize(square, self.resolution, "center"), label
