"""Reading prepared datasets without tensorflow-datasets: the Example parser, the reader, missing packages."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from pggan import dependencies
from pggan.data import builder, dataset, example_proto
from pggan.data.errors import DataError
from pggan.data.sources import SyntheticSource

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A real prepared dataset: 37 labelled synthetic images, levels 4..16, in 8 array_record shards."""
    data_dir = str(tmp_path_factory.mktemp("data"))
    builder.prepare_dataset(SyntheticSource(16, 37, seed=3), data_dir, "syn", num_workers=1, progress=False)
    return data_dir


@pytest.mark.parametrize("channels,label", [(3, 0), (3, 9), (1, -1), (3, 2**40)])
def test_parser_reads_what_tfds_serialises(channels, label):
    features = builder.features_for(channels)
    image = np.random.default_rng(label % 97).integers(0, 256, (8, 8, channels), dtype=np.uint8)
    record = features.serialize_example({"image": image, "label": label})
    decoded, decoded_label = example_proto.decode_image_example(record)
    assert decoded.dtype == np.uint8 and decoded.shape == (8, 8, channels)
    np.testing.assert_array_equal(decoded, image)
    assert decoded_label == label
    assert example_proto.parse_example(record)["image/shape"] == [8, 8, channels]


def test_parser_reads_unpacked_numbers_and_floats():
    # Example{features{feature{key: "n", value{int64_list{value: 5, value: -2 (unpacked)}}},
    #                  feature{key: "f", value{float_list{value: [0.5, 2.0] (packed)}}}}}
    int_list = b"\x08\x05" + b"\x08" + b"\xfe" + b"\xff" * 8 + b"\x01"
    int_feature = b"\x1a" + bytes([len(int_list)]) + int_list
    float_list = b"\x0a\x08" + np.array([0.5, 2.0], "<f4").tobytes()
    float_feature = b"\x12" + bytes([len(float_list)]) + float_list
    entries = b""
    for key, feature in ((b"n", int_feature), (b"f", float_feature)):
        entry = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(feature)]) + feature
        entries += b"\x0a" + bytes([len(entry)]) + entry
    record = b"\x0a" + bytes([len(entries)]) + entries
    assert example_proto.parse_example(record) == {"n": [5, -2], "f": [0.5, 2.0]}


def test_parser_refuses_truncated_records_and_other_examples():
    record = builder.features_for(3).serialize_example({"image": np.zeros((4, 4, 3), np.uint8), "label": 1})
    with pytest.raises(DataError, match="truncated"):
        example_proto.parse_example(record[:-3])
    with pytest.raises(DataError, match="not image/value, image/shape and label"):
        example_proto.decode_image_example(b"")


def test_reader_gives_the_same_examples_as_tfds_byte_for_byte(prepared):
    ds = dataset.open_dataset("syn", prepared)
    assert (ds.num_examples, ds.levels, ds.num_classes, ds.channels) == (37, (4, 8, 16), 4, 3)
    for resolution in ds.levels:
        images, labels = ds.read_level(resolution)
        source = ds.data_source(resolution)  # tensorflow-datasets' own reader and decoder
        reference = [source[i] for i in range(len(source))]
        assert images.dtype == np.uint8 and images.shape == (37, resolution, resolution, 3)
        assert images.tobytes() == np.stack([e["image"] for e in reference]).tobytes()
        assert labels.tolist() == [int(e["label"]) for e in reference]
        picked = [36, 0, 17, 17, 5]
        picked_images, picked_labels = ds.level(resolution).read(picked)
        assert picked_images.tobytes() == images[picked].tobytes() and picked_labels.tolist() == labels[picked].tolist()


def _run_with_hidden_packages(hidden, code: str) -> subprocess.CompletedProcess:
    script = f"import sys\nfor name in {tuple(hidden)!r}:\n    sys.modules[name] = None\n{code}"
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": REPO},
    )


def test_reading_needs_neither_tensorflow_datasets_nor_grain(prepared):
    code = (
        "import hashlib\nfrom pggan.data import config, dataset\n"
        f"ds = dataset.open_dataset('syn', {prepared!r})\n"
        "for r in ds.levels:\n"
        "    images, labels = ds.read_level(r)\n"
        "    print(r, hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest())\n"
        "assert 'tensorflow_datasets' not in sys.modules or sys.modules['tensorflow_datasets'] is None\n"
    )
    result = _run_with_hidden_packages(("tensorflow_datasets", "grain"), code)
    assert result.returncode == 0, result.stderr[-3000:]
    ds = dataset.open_dataset("syn", prepared)
    expected = [f"{r} {hashlib.sha256(b''.join(a.tobytes() for a in ds.read_level(r))).hexdigest()}" for r in ds.levels]
    assert result.stdout.split("\n")[:-1] == expected


def test_a_missing_package_is_named_in_one_line(prepared):
    with pytest.raises(
        dependencies.MissingPackageError,
        match=r"^reading a prepared dataset needs the Python package array_record, which is not ",
    ):
        _require_hidden("array_record.python.array_record_module", "reading a prepared dataset")
    code = f"from pggan.data import dataset\ndataset.open_dataset('syn', {prepared!r}).read_level(4)\n"
    result = _run_with_hidden_packages(("array_record",), code)
    assert "MissingPackageError: reading a prepared dataset needs the Python package array_record" in result.stderr
    launcher = _run_with_hidden_packages(("ml_collections",), "import runpy\nrunpy.run_module('pggan.main')")
    assert launcher.returncode == 1 and "Traceback" not in launcher.stderr
    assert launcher.stderr.strip() == (
        "error: reading recipe files (configs/*.py) needs the Python package "
        "ml_collections, which is not installed: pip install ml_collections (or "
        "pip install -e . for all of pggan's packages)"
    )


def _require_hidden(module: str, purpose: str):
    saved = sys.modules.get(module)
    sys.modules[module] = None
    try:
        return dependencies.require(module, purpose)
    finally:
        if saved is None:
            del sys.modules[module]
        else:
            sys.modules[module] = saved


def test_the_benchmark_names_a_missing_package_in_one_line():
    tool = os.path.join(REPO, "tools", "benchmark.py")
    result = _run_with_hidden_packages(
        ("ml_collections",), f"import runpy\nrunpy.run_path({tool!r}, run_name='__main__')"
    )
    assert result.returncode == 1 and result.stderr.strip().startswith(
        "error: reading recipe files (configs/*.py) needs the Python package ml_collections, which is not installed"
    )
