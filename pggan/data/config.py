"""The `dataset` section of training configs, and opening the dataset and input it describes."""

from __future__ import annotations

import ml_collections
from jax.sharding import Mesh

from pggan.data.dataset import PreparedDataset, check_dataset, open_dataset
from pggan.data.pipeline import InputIterator
from pggan.data.sources import make_source


def get_config() -> ml_collections.ConfigDict:
    """Defaults of `config.dataset` (the quickstart: digits, auto-prepared on first use).

    name: prepared dataset name in data_dir.
    data_dir: '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
    source: source spec to prepare the dataset from when it is missing ('' never prepares), see
      pggan/data/sources.py: 'digits', 'synthetic', 'folder:<path>', 'tfds:<name>'.
    num_examples: how many images a 'synthetic' source generates.
    prepare_workers: processes used by that automatic preparation (0: automatic).
    mirror_augment: random left-right flips of real images (per sample, on the device).
    on_device: 'auto' holds a level on the devices when it fits in on_device_memory_fraction of the
      device memory, 'always', or 'never' (host pipeline).
    num_threads, prefetch_batches, device_prefetch: host pipeline reader threads, read-ahead batches,
      batches whose transfer to the devices is started ahead.
    """
    config = ml_collections.ConfigDict()
    config.name = "digits"
    config.data_dir = ""
    config.source = "digits"
    config.num_examples = 1000
    config.prepare_workers = 0
    config.mirror_augment = False
    config.on_device = "auto"
    config.on_device_memory_fraction = 0.5
    config.num_threads = 2
    config.prefetch_batches = 4
    config.device_prefetch = 2
    return config


def open_from_config(config: ml_collections.ConfigDict, *, resolution: int, channels: int | None = None,
                     label_size: int = 0) -> PreparedDataset:
    """Opens (auto-preparing if configured) the dataset of `config` and checks it fits the model.

    resolution, channels, label_size: the model's final resolution, image channels and classes.
    """
    source = None
    if config.source:
        source = make_source(config.source, resolution=resolution, num_examples=config.num_examples,
                             tfds_data_dir=config.data_dir or None)
    dataset = open_dataset(config.name, config.data_dir or None, prepare_if_missing_from=source,
                           num_workers=config.prepare_workers or None)
    check_dataset(dataset, resolution=resolution, channels=channels, label_size=label_size)
    return dataset


def iterator_from_config(config: ml_collections.ConfigDict, dataset: PreparedDataset, *, resolution: int,
                         batch_size: int, mesh: Mesh, seed: int, position: int = 0) -> InputIterator:
    """The host input pipeline for one (resolution, batch size) stage, starting at `position`."""
    return InputIterator(dataset, resolution=resolution, batch_size=batch_size, mesh=mesh, seed=seed,
                         position=position, num_threads=config.num_threads,
                         prefetch_batches=config.prefetch_batches, device_prefetch=config.device_prefetch)
