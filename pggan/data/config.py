"""Opening the dataset and the input pipeline that a config's `dataset` section describes.

`config` below is that section (`pggan.training.config.DatasetConfig`: name, data_dir, source, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from jax.sharding import Mesh

from pggan import dependencies
from pggan.data.dataset import PreparedDataset, check_dataset, open_dataset
from pggan.data.errors import DataError
from pggan.data.source_specs import BUILTIN_SOURCES, make_source

if TYPE_CHECKING:  # the host pipeline needs grain, which levels held on the devices do not
    from pggan.data.pipeline import InputIterator


def open_from_config(config, *, resolution: int, channels: int | None = None, label_size: int = 0) -> PreparedDataset:
    """Opens (auto-preparing if configured) the dataset of `config` and checks it fits the model.

    resolution, channels, label_size: the model's final resolution, image channels and classes.
    With `config.max_images` = N > 0 the dataset is cut to its first N images (`PreparedDataset.first`).
    Raises a DataError (one line, with the command that prepares it) when the dataset is missing and
    cannot be prepared from `config.source`, and one when it has fewer than max_images images.
    """
    source = None
    # The built-in sources prepare only datasets named after them (digits, synthetic16, ...): a recipe's
    # default source never fills a dataset the user named for their own images.
    builtin = config.source in BUILTIN_SOURCES
    if config.source and (not builtin or config.name.startswith(config.source)):
        source = make_source(
            config.source,
            resolution=resolution,
            num_examples=config.num_examples,
            tfds_data_dir=config.data_dir or None,
        )
    dataset = open_dataset(
        config.name, config.data_dir or None, prepare_if_missing_from=source, num_workers=config.prepare_workers or None
    )
    check_dataset(dataset, resolution=resolution, channels=channels, label_size=label_size)
    if config.max_images > dataset.num_examples:
        raise DataError(
            f"config.dataset.max_images={config.max_images} but dataset {dataset.name} has "
            f"{dataset.num_examples} images: set at most {dataset.num_examples} (0 = every image)"
        )
    return dataset.first(config.max_images) if config.max_images else dataset


def iterator_from_config(
    config,
    dataset: PreparedDataset,
    *,
    resolution: int,
    batch_size: int,
    mesh: Mesh,
    seed: int,
    position: int = 0,
    row_order: np.ndarray | None = None,
) -> InputIterator:
    """The host input pipeline for one (resolution, batch size) stage, starting at `position`."""
    try:
        from pggan.data.pipeline import InputIterator
    except ModuleNotFoundError as error:
        raise dependencies.missing_package(
            error,
            f"reading {resolution}x{resolution} batches on the host (a level "
            f"not held on the devices, see dataset.on_device)",
        ) from None
    return InputIterator(
        dataset,
        resolution=resolution,
        batch_size=batch_size,
        mesh=mesh,
        seed=seed,
        position=position,
        num_threads=config.num_threads,
        row_order=row_order,
        prefetch_batches=config.prefetch_batches,
        device_prefetch=config.device_prefetch,
    )
