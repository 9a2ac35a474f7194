"""Preparing a folder of mixed images, reading it back level by level, resuming, and bad input."""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image
from skimage.transform import resize

from pggan.data import builder, dataset, order, pipeline, source_specs, sources
from pggan.data.errors import DatasetMismatchError, DatasetNotFoundError, PreparationConflictError, SourceError
from tests import data_helpers
from tests.data_helpers import RESOLUTION


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("images"))
    return root, data_helpers.make_mixed_folder(root)


@pytest.fixture(scope="module")
def prepared(folder, tmp_path_factory):
    root, _ = folder
    data_dir = str(tmp_path_factory.mktemp("prepared"))
    source = source_specs.make_source(f"folder:{root}", resolution=RESOLUTION, labels_from_subfolders=True)
    summary = builder.prepare_dataset(source, data_dir, "mixed", progress=False)
    return summary, dataset.open_dataset("mixed", data_dir)


def _match_source(image, expected):
    """The relative path of the expected top-level image equal to `image`, or None."""
    return next((path for path, (reference, _) in expected.items() if np.array_equal(image, reference)), None)


def test_summary_reports_skipped_files_and_metadata(prepared):
    summary, ds = prepared
    assert (summary.num_examples, summary.num_skipped) == (10, 2)
    assert sorted(entry.split(":")[0] for entry in summary.skipped) == ["cats/corrupt.jpg", "dogs/truncated.png"]
    assert "Skipped 2 unreadable images" in summary.report()
    assert (ds.resolution, ds.channels, ds.num_examples, ds.levels) == (RESOLUTION, 3, 10, (4, 8, 16))
    assert (ds.num_classes, ds.class_names) == (2, ("cats", "dogs"))
    with open(os.path.join(ds.path, "metadata.json")) as file:
        assert json.load(file)["num_skipped"] == 2


def test_pipeline_batches_equal_independent_box_downsample_at_every_level(prepared, folder):
    """Every example of the stream, at every level, equals the reference pyramid of its source image."""
    root, expected = folder
    _, ds = prepared
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    batch_size, num_batches = 8, 3  # 24 positions: epoch 0 and most of epoch 1
    streams = {}
    for resolution in ds.levels:
        iterator = pipeline.InputIterator(ds, resolution=resolution, batch_size=batch_size, mesh=mesh, seed=5)
        batches = [next(iterator) for _ in range(num_batches)]
        iterator.close()
        streams[resolution] = (
            np.concatenate([np.asarray(b["images"]) for b in batches]),
            np.concatenate([np.asarray(b["labels"]) for b in batches]),
        )
    top_images, labels = streams[RESOLUTION]
    matched = [_match_source(image, expected) for image in top_images]
    jpeg = _resized_jpeg_reference(root)
    for position, path in enumerate(matched):
        if path is None:  # the only resized image: close to an independent anti-aliased resize
            assert np.abs(top_images[position].astype(int) - jpeg).mean() < 6
            reference, folder_class = top_images[position], "dogs"
        else:
            reference, folder_class = expected[path]
        assert labels[position] == ds.class_names.index(folder_class)
        for resolution in ds.levels:
            np.testing.assert_array_equal(
                streams[resolution][0][position], data_helpers.box_downsample(reference, resolution)
            )
            assert streams[resolution][1][position] == labels[position]
    # Epoch 0 shows every example once: 9 known sources + the resized JPEG.
    assert sorted(p for p in matched[:10] if p) == sorted(expected) and matched[:10].count(None) == 1
    assert list(order.example_indices(np, np.arange(10), 10, 5)) != list(range(10))


def _resized_jpeg_reference(root):
    """dogs/photo.jpg (24x20) decoded, centre-cropped to 20x20, resized to 16x16 by scikit-image."""
    with Image.open(os.path.join(root, "dogs", "photo.jpg")) as img:
        pixels = np.asarray(img.convert("RGB"))
    return np.rint(resize(pixels[2:22] / 255.0, (RESOLUTION, RESOLUTION), anti_aliasing=True) * 255).astype(int)


def test_fast_reader_agrees_with_tfds_decoder(prepared):
    _, ds = prepared
    for resolution in ds.levels:
        images, labels = ds.read_level(resolution)
        source = ds.data_source(resolution)
        for index in range(ds.num_examples):
            example = source[index]
            np.testing.assert_array_equal(example["image"], images[index])
            assert example["label"] == labels[index]


class _InterruptingSource(sources.FolderSource):
    """A real folder source that simulates Ctrl-C after a number of loaded images."""

    def __init__(self, *args, interrupt_after, **kwargs):
        super().__init__(*args, **kwargs)
        self.loads_left = interrupt_after

    def load(self, item):
        if self.loads_left == 0:
            raise KeyboardInterrupt
        self.loads_left -= 1
        return super().load(item)


def test_interrupted_preparation_resumes_to_identical_result(folder, prepared, tmp_path):
    root, _ = folder
    _, reference = prepared
    data_dir = str(tmp_path)
    interrupting = _InterruptingSource(root, RESOLUTION, labels_from_subfolders=True, interrupt_after=5)
    with pytest.raises(KeyboardInterrupt):
        builder.prepare_dataset(interrupting, data_dir, "mixed", progress=False)
    work_dir = os.path.join(data_dir, "mixed", f"incomplete.{builder.VERSION}")
    assert any(name.endswith(".done.json") for name in os.listdir(work_dir))  # some shards finished

    other_settings = sources.FolderSource(root, 8, labels_from_subfolders=True)
    with pytest.raises(PreparationConflictError, match="delete that directory"):
        builder.prepare_dataset(other_settings, data_dir, "mixed", progress=False)

    source = sources.FolderSource(root, RESOLUTION, labels_from_subfolders=True)
    summary = builder.prepare_dataset(source, data_dir, "mixed", progress=False)
    assert (summary.num_examples, summary.num_skipped) == (10, 2)
    assert not os.path.exists(work_dir)
    resumed = dataset.open_dataset("mixed", data_dir)
    for resolution in reference.levels:
        for got, want in zip(resumed.read_level(resolution), reference.read_level(resolution)):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(PreparationConflictError, match="already prepared"):
        builder.prepare_dataset(source, data_dir, "mixed", progress=False)


def test_bad_folders_give_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        source_specs.make_source(f"folder:{tmp_path}/missing", resolution=16).list_items()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(SourceError, match="no images"):
        builder.prepare_dataset(source_specs.make_source(f"folder:{tmp_path}/empty", resolution=16), str(tmp_path))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    with pytest.raises(SourceError, match="none of the 1 images could be read"):
        builder.prepare_dataset(
            source_specs.make_source(f"folder:{tmp_path}/broken", resolution=16), str(tmp_path), progress=False
        )
    with pytest.raises(SourceError, match="needs a target resolution"):
        source_specs.make_source(f"folder:{tmp_path}")
    with pytest.raises(SourceError, match="power of two"):
        source_specs.make_source("synthetic", resolution=48)
    for too_large in (2048, 1048576):  # the models stop at 1024; 2**20 once died with a MemoryError
        with pytest.raises(SourceError, match=rf"the models stop at 1024x1024\), got {too_large}"):
            source_specs.make_source("synthetic", resolution=too_large)
    with pytest.raises(SourceError, match="unknown source"):
        source_specs.make_source("imagenet")


def test_missing_dataset_error_says_how_to_prepare(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="run pggan-prepare"):
        dataset.open_dataset("nothing_here", str(tmp_path))


def test_dataset_checks_against_the_model(prepared):
    _, ds = prepared
    dataset.check_dataset(ds, resolution=16, channels=3, label_size=2)
    with pytest.raises(DatasetMismatchError, match="--resolution=32"):
        dataset.check_dataset(ds, resolution=32)
    with pytest.raises(DatasetMismatchError, match="num_channels=3"):
        dataset.check_dataset(ds, resolution=16, channels=1)
    with pytest.raises(DatasetMismatchError, match="label_size=2"):
        dataset.check_dataset(ds, resolution=16, label_size=10)


def test_the_shipped_digits_equal_scikit_learns_copy_of_the_uci_data():
    from sklearn.datasets import load_digits

    images, labels = sources.shipped_digits()
    reference = load_digits()
    assert images.dtype == labels.dtype == np.uint8
    np.testing.assert_array_equal(images, reference.images)
    np.testing.assert_array_equal(labels, reference.target)
