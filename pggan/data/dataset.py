"""Opening prepared datasets (see builder.py for the format) and reading their levels by index.

Reading needs neither TensorFlow, nor tensorflow-datasets, nor the source, only array_record: the
tfds metadata files (JSON) list each level's shards. `LevelReader` reads records in batches and
decodes them with a fast path instead of a per-example parser (~100 us per example in tfds, too slow
for 10k img/s on two cores). A record is a serialized tf.train.Example; the raw image bytes are the
payload of the 'image/value' entry, whose headers have a fixed size for a given level. The reader
finds that entry, takes the payload as the image (zero parsing), and maps the few bytes outside the
payload to the label through a cache filled by a full decode (`example_proto`, one decode per
distinct label, checked against the payload). `PreparedDataset.data_source` gives tfds's own
decoder (needs tensorflow-datasets).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import json
import os
import platform
import threading

import numpy as np
from absl import logging

from pggan import dependencies
from pggan.data import buffers, builder, example_proto
from pggan.data.errors import DataError, DatasetMismatchError, DatasetNotFoundError
from pggan.data.sources import Source

READER_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"  # tuned for random access
_IMAGE_KEY = b"\n\x0bimage/value"  # a Features map entry's key field: tag 1, length 11, "image/value"
_HEADER_WINDOW = 256  # the image entry starts within the first bytes (the other entries are tiny)
_READ_CHUNK_BYTES = 4 << 20  # records fetched per reader call: few big records stay in reused memory
_LARGE_RECORD_BYTES = 256 << 10  # from 256px RGB: worth tuning malloc for (keep_large_buffers_in_heap)


def _varint(value: int) -> bytes:
    """Protocol-buffer base-128 varint of a non-negative int."""
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _payload_offset(nbytes: int) -> int:
    """Bytes from the start of the image key to the pixels: Feature, BytesList and value headers."""
    bytes_list = 1 + len(_varint(nbytes)) + nbytes
    feature = 1 + len(_varint(bytes_list)) + bytes_list
    return len(_IMAGE_KEY) + 1 + len(_varint(feature)) + 1 + len(_varint(bytes_list)) + 1 + len(_varint(nbytes))


def default_data_dir() -> str:
    """$TFDS_DATA_DIR if set, else ~/tensorflow_datasets (the tfds default)."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


@functools.cache
def keep_large_buffers_in_heap() -> None:
    """Tunes glibc malloc so multi-megabyte record buffers are recycled instead of mmap'ed afresh.

    By default glibc serves every large allocation with a new mmap and returns it on free, so each
    1024px record (3 MiB, copied several times inside the array_record reader) pays page faults:
    reading was 4x slower (measured ~130 vs ~550 records/s). Raising M_MMAP_THRESHOLD to 32 MiB and
    M_TRIM_THRESHOLD to 1 GiB keeps such buffers in the heap for reuse; the process keeps up to
    1 GiB of freed memory. Process-wide, applied once, only on glibc.
    """
    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 1 << 30)


class LevelReader:
    """Random access to one level of a prepared dataset. Thread-safe.

    read(indices) -> (images uint8 [n, r, r, C], labels int32 [n]) in the order of `indices`.
    """

    def __init__(self, paths: list[str], shard_lengths: list[int], resolution: int, channels: int):
        self.paths = paths
        self.offsets = np.cumsum([0] + list(shard_lengths))
        self.num_examples = int(self.offsets[-1])
        self.shape = (resolution, resolution, channels)
        self._image_bytes = resolution * resolution * channels
        self._payload_offset = _payload_offset(self._image_bytes)
        if self._image_bytes >= _LARGE_RECORD_BYTES:
            keep_large_buffers_in_heap()
        self._labels_by_rest: dict[bytes, int] = {}
        self._shard_readers = [None] * len(paths)
        self._open_lock = threading.Lock()

    def _reader(self, shard: int):
        """The shard's reader, opened on first use (readers are shared by threads, like grain does)."""
        reader = self._shard_readers[shard]
        if reader is None:
            with self._open_lock:
                reader = self._shard_readers[shard]
                if reader is None:
                    module = dependencies.require(
                        "array_record.python.array_record_module", "reading a prepared dataset"
                    )
                    reader = module.ArrayRecordReader(self.paths[shard], READER_OPTIONS)
                    self._shard_readers[shard] = reader
        return reader

    def _learn_label(self, record: bytes, rest: bytes, start: int) -> int:
        """Decodes a whole record, checks the image is the payload found, caches its label."""
        try:
            image, label = example_proto.decode_image_example(record)
        except DataError as error:
            raise DataError(f"corrupt record in {os.path.dirname(self.paths[0])} ({error})") from None
        if image.shape != self.shape or image.tobytes() != record[start : start + self._image_bytes]:
            raise DataError(
                f"{self.paths[0]} holds {image.shape} images in an unexpected layout, expected "
                f"{self.shape}; was it written by tools/prepare_dataset.py?"
            )
        self._labels_by_rest[rest] = label
        return label

    def _decode(self, records: list[bytes], images: np.ndarray, labels: np.ndarray, rows) -> None:
        nbytes = self._image_bytes
        for row, record in zip(rows, records):
            key = record.find(_IMAGE_KEY, 0, _HEADER_WINDOW)
            if key < 0:
                raise DataError(f"a record in {os.path.dirname(self.paths[0])} has no image; prepare the dataset again")
            start = key + self._payload_offset
            rest = record[:start] + record[start + nbytes :]
            label = self._labels_by_rest.get(rest)
            if label is None:
                label = self._learn_label(record, rest, start)
            images[row] = np.frombuffer(record, np.uint8, nbytes, start).reshape(self.shape)
            labels[row] = label

    def read(self, indices, pool: buffers.BufferPool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Examples at `indices` (ints in [0, num_examples)): uint8 [n, r, r, C], int32 [n].

        pool: where the image array comes from (recycled buffers); default: a fresh aligned array.
        """
        indices = np.asarray(indices, np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
            raise IndexError(f"indices must be in [0, {self.num_examples})")
        shape = (indices.size, *self.shape)
        images = pool.empty(shape) if pool else buffers.aligned_empty(shape)
        labels = buffers.aligned_empty((indices.size,), np.int32)
        shards = np.searchsorted(self.offsets, indices, side="right") - 1
        chunk = max(1, _READ_CHUNK_BYTES // self._image_bytes)
        for shard in np.unique(shards):
            rows = np.flatnonzero(shards == shard)
            for start in range(0, rows.size, chunk):
                part = rows[start : start + chunk]
                records = self._reader(shard).read((indices[part] - self.offsets[shard]).tolist())
                self._decode(records, images, labels, part)
        return images, labels

    def read_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Examples start..stop-1 in stored order (sequential reads): uint8 [n, r, r, C], int32 [n]."""
        return self.read(np.arange(start, stop))


@dataclasses.dataclass(frozen=True, eq=False)
class PreparedDataset:
    """A prepared dataset on disk and its metadata (no pixels are read until asked).

    levels: resolutions 4, 8, ..., resolution. num_classes: 0 when unlabeled (labels are then -1).
    source: the source's settings as recorded at preparation (see Source.describe).
    """

    name: str
    path: str
    resolution: int
    channels: int
    num_classes: int
    class_names: tuple[str, ...]
    num_examples: int
    levels: tuple[int, ...]
    source: dict
    shard_lengths: dict[int, tuple[int, ...]] = dataclasses.field(repr=False)  # examples per shard, per level
    _readers: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_directory(cls, path: str) -> PreparedDataset:
        """Opens <data_dir>/<name>/<version> from its metadata files (tfds's JSON, read without tfds)."""
        if not os.path.exists(os.path.join(path, "dataset_info.json")):
            raise DatasetNotFoundError(f"no prepared dataset in {path}")
        meta = {}
        if os.path.exists(os.path.join(path, "metadata.json")):
            with open(os.path.join(path, "metadata.json")) as file:
                meta = json.load(file)
        if "levels" not in meta:
            raise DataError(
                f"{path} is a tfds dataset but not a prepared PGGAN dataset "
                f"(no levels in metadata.json); prepare it with tools/prepare_dataset.py"
            )
        with open(os.path.join(path, "dataset_info.json")) as file:
            info = json.load(file)
        splits = {split["name"]: tuple(int(n) for n in split["shardLengths"]) for split in info["splits"]}
        return cls(
            name=info["name"],
            path=path,
            resolution=meta["resolution"],
            channels=meta["channels"],
            num_classes=meta["num_classes"],
            class_names=tuple(meta["class_names"]),
            num_examples=meta["num_examples"],
            levels=tuple(meta["levels"]),
            source=dict(meta["source"]),
            shard_lengths={r: splits[builder.split_name(r)] for r in meta["levels"]},
        )

    def _check_level(self, resolution: int) -> None:
        if resolution not in self.levels:
            raise DatasetMismatchError(f"dataset {self.name} has levels {list(self.levels)}, not {resolution}")

    def level(self, resolution: int) -> LevelReader:
        """The reader of one level (one per dataset and resolution, shared)."""
        if resolution not in self._readers:
            self._check_level(resolution)
            lengths = self.shard_lengths[resolution]
            paths = [builder.shard_path(self.path, self.name, resolution, i, len(lengths)) for i in range(len(lengths))]
            self._readers[resolution] = LevelReader(paths, list(lengths), resolution, self.channels)
        return self._readers[resolution]

    def read_level(self, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        """A whole level in stored order: images uint8 [N, r, r, C], labels int32 [N]."""
        return self.level(resolution).read_range(0, self.num_examples)

    def first(self, count: int) -> PreparedDataset:
        """The same dataset cut to its first `count` examples in stored order (1 <= count <= num_examples).

        Every level serves exactly examples 0..count-1 (the training order permutes those), the metadata
        says num_examples = count; ValueError outside that range.
        """
        if not 1 <= count <= self.num_examples:
            raise ValueError(f"count must be in [1, {self.num_examples}], got {count}")
        kept = {
            r: tuple(int(n) for n in np.diff(np.minimum(np.cumsum([0, *lengths]), count)))
            for r, lengths in self.shard_lengths.items()
        }
        return dataclasses.replace(self, num_examples=count, shard_lengths=kept, _readers={})

    def label_probabilities(self) -> np.ndarray:
        """Class frequencies float64 [num_classes] (read from the smallest level); [] when unlabeled."""
        if not self.num_classes:
            return np.zeros((0,))
        _, labels = self.read_level(min(self.levels))
        return np.bincount(labels, minlength=self.num_classes) / len(labels)

    def level_nbytes(self, resolution: int) -> int:
        """Bytes of one level's pixels held as uint8 [N, r, r, C] (plus int32 labels)."""
        return self.num_examples * (resolution * resolution * self.channels + 4)

    def data_source(self, resolution: int):
        """tfds's own random-access data source of one level: items {'image', 'label'} (slower; needs tfds)."""
        self._check_level(resolution)
        tfds = dependencies.require("tensorflow_datasets", "tfds's reader of prepared datasets")
        return tfds.builder_from_directory(self.path).as_data_source(split=builder.split_name(resolution))


def open_dataset(
    name: str,
    data_dir: str | None = None,
    *,
    prepare_if_missing_from: Source | None = None,
    num_workers: int | None = None,
) -> PreparedDataset:
    """Opens prepared dataset `name` in `data_dir` (default: default_data_dir()).

    prepare_if_missing_from: a source to prepare the dataset from when it does not exist yet (the
      trainer's auto-preparation of digits and synthetic); otherwise a missing dataset raises
      DatasetNotFoundError that tells how to prepare it.
    """
    builder.check_name(name)
    data_dir = os.path.expanduser(data_dir or default_data_dir())
    path = os.path.join(data_dir, name, builder.VERSION)
    if not os.path.exists(os.path.join(path, "dataset_info.json")):
        if prepare_if_missing_from is None:
            raise DatasetNotFoundError(
                f"no prepared dataset {name} in {data_dir}: run pggan-prepare --source=<folder:PATH|"
                f"tfds:NAME|digits|synthetic> --name={name} --data_dir={data_dir}"
            )
        logging.info("Preparing dataset %s in %s from %s", name, data_dir, prepare_if_missing_from.describe())
        summary = builder.prepare_dataset(prepare_if_missing_from, data_dir, name, num_workers=num_workers)
        logging.info("%s", summary.report())
    return PreparedDataset.from_directory(path)


def check_dataset(
    dataset: PreparedDataset, *, resolution: int, channels: int | None = None, label_size: int = 0
) -> None:
    """Raises DatasetMismatchError if `dataset` cannot feed a model trained up to `resolution`.

    channels: the model's image channels (None: not checked). label_size: the model's number of
    classes for conditioning (0: unconditional, any dataset works).
    """
    if dataset.resolution < resolution:
        raise DatasetMismatchError(
            f"dataset {dataset.name} is {dataset.resolution}x{dataset.resolution} but the model trains up to "
            f"{resolution}x{resolution}: prepare the images at --resolution={resolution} or train to "
            f"{dataset.resolution}x{dataset.resolution} with --config.model.resolution={dataset.resolution}"
        )
    if channels is not None and dataset.channels != channels:
        raise DatasetMismatchError(
            f"dataset {dataset.name} has {dataset.channels} channels but the model "
            f"has {channels}: add --config.model.num_channels={dataset.channels}"
        )
    if label_size and dataset.num_classes != label_size:
        raise DatasetMismatchError(
            f"the model is conditioned on {label_size} classes but dataset {dataset.name} has "
            f"{dataset.num_classes or 'no'} labels: add --config.model.label_size={dataset.num_classes}"
        )
