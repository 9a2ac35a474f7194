"""Catalog datasets through tensorflow-datasets, run under `tfds.testing.mock_data` (no download, no TF)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from pggan.data import builder, dataset, source_specs
from pggan.data.errors import MissingDependencyError
from tests.data_helpers import box_downsample

NUM_EXAMPLES = 4


def _prepare_mocked(name, data_dir, **kwargs):
    """Prepares tfds:<name> from mocked catalog data; returns (PreparedDataset, the mocked examples)."""
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
        source = source_specs.make_source(f"tfds:{name}", tfds_data_dir=data_dir, **kwargs)
        builder.prepare_dataset(source, data_dir, progress=False)
        mocked = [tfds.data_source(name, split=split)[i] for split in source.rule.splits for i in range(NUM_EXAMPLES)]
    return dataset.open_dataset(source.default_name(), data_dir), mocked


def _stored_sources(ds, mocked, to_top):
    """For each stored example, the index of a mocked example with the same top level.

    Checks that the stored top levels are exactly the mapped catalog images (as a multiset: the mock
    repeats its examples in each split).
    """
    images, _ = ds.read_level(ds.resolution)
    tops = [to_top(example["image"]) for example in mocked]
    assert sorted(image.tobytes() for image in images) == sorted(top.tobytes() for top in tops)
    return [next(i for i, top in enumerate(tops) if np.array_equal(top, image)) for image in images]


@pytest.mark.parametrize(
    "name, resolution, channels, to_top",
    [
        ("cifar10", 32, 3, lambda image: image),
        ("mnist", 32, 1, lambda image: np.pad(image, ((2, 2), (2, 2), (0, 0)))),
        ("celeb_a", 128, 3, lambda image: image[121 - 64 : 121 + 64, 89 - 64 : 89 + 64]),
    ],
)
def test_catalog_mapping_is_exact(name, resolution, channels, to_top, tmp_path):
    ds, mocked = _prepare_mocked(name, str(tmp_path))
    assert (ds.resolution, ds.channels, ds.num_examples) == (resolution, channels, len(mocked))
    assert ds.name == f"{name}_pggan"
    matches = _stored_sources(ds, mocked, to_top)
    images, labels = ds.read_level(8)
    for stored, source_index in enumerate(matches):
        np.testing.assert_array_equal(images[stored], box_downsample(to_top(mocked[source_index]["image"]), 8))
        expected_label = mocked[source_index]["label"] if "label" in mocked[source_index] else -1
        assert labels[stored] == expected_label
    assert ds.num_classes == (10 if "label" in mocked[0] else 0)


def test_lsun_is_centre_cropped_and_resized_to_256(tmp_path):
    ds, mocked = _prepare_mocked("lsun/bedroom", str(tmp_path))
    assert (ds.name, ds.resolution, ds.levels[-1], ds.num_examples) == ("lsun_bedroom_pggan", 256, 256, NUM_EXAMPLES)
    images, labels = ds.read_level(256)
    assert images.shape == (NUM_EXAMPLES, 256, 256, 3) and (labels == -1).all()


def test_celeb_a_hq_config_sets_the_resolution(tmp_path):
    ds, _ = _prepare_mocked("celeb_a_hq/128", str(tmp_path), resolution=64)
    assert (ds.resolution, ds.levels) == (64, (4, 8, 16, 32, 64))


def test_missing_tensorflow_names_the_extra(monkeypatch, tmp_path):
    def needs_tensorflow(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'tensorflow'")

    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
        source = source_specs.make_source("tfds:cifar10", tfds_data_dir=str(tmp_path))
        monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", needs_tensorflow)
        with pytest.raises(MissingDependencyError, match=r"pggan\[prepare\]"):
            source.list_items()
