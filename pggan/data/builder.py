"""Prepares a dataset: one pass over a source writes every level of detail as a tfds dataset.

On-disk format (a tensorflow-datasets dataset, loadable with `tfds.builder_from_directory` or
`tfds.data_source(name, data_dir=...)`, no TensorFlow needed):
  <data_dir>/<name>/1.0.0/
    dataset_info.json, features.json, metadata.json   tfds metadata; metadata.json holds resolution,
                                                       channels, num_classes, class_names, levels,
                                                       source, num_examples, num_skipped, skipped
    <name>-res<r>.array_record-<i>-of-<n>              split 'res<r>' for r = 4, 8, ..., resolution
Every split holds the same examples in the same order. An example is
  image: uint8 [r, r, C] stored raw (uncompressed records; decoding PNG or zstd is too slow for
         1024px training on a few cores), each level the exact 2x2-box pyramid of the top level
         (imaging.box_pyramid, as the official dataset_tool);
  label: int64, the class in [0, num_classes), or -1 for unlabeled sources.

Why not a tfds `GeneratorBasedBuilder`: it generates splits one after the other, so every source
image would be decoded and resized once per level (9 times at 1024px), or staged in a full-size
temporary copy. Here each image is decoded once and all its levels are written together, shard by
shard in parallel worker processes, with tfds's own feature serialisation; then
`tfds.folder_dataset.write_metadata` makes the directory a regular tfds dataset.

Determinism and resuming: items are shuffled with a fixed seed and cut into shards. Shards are
written into `<name>/incomplete.1.0.0/` with a marker file each when complete; re-running the same
preparation skips finished shards, and the directory is renamed to `1.0.0` at the end. A different
preparation over an interrupted one is refused with the path to delete.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from pggan import dependencies
from pggan.data import imaging
from pggan.data.errors import DataError, PreparationConflictError, SourceError, UnreadableImageError
from pggan.data.sources import Source

VERSION = "1.0.0"
WRITER_OPTIONS = "group_size:1,uncompressed"
PREPARE_SHUFFLE_SEED = 2018  # fixed: the stored example order never depends on the machine
SHARD_BYTES = 1 << 30  # top-level bytes per shard at most (lower levels add a third)
MIN_SHARDS = 8  # units of parallel work (and of resuming) even for small datasets
MAX_REPORTED_SKIPS = 20
SMALL_SOURCE_BYTES = 64 << 20  # top-level bytes below which worker processes cost more than they save
_REQUEST_FILE = "preparation.json"


def check_name(name: str) -> str:
    """Returns `name` if it is a valid dataset name ([a-z][a-z0-9_]*), else raises DataError."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise DataError(
            f"dataset name {name!r} is invalid: use lowercase letters, digits and '_', "
            f"starting with a letter (e.g. my_photos)"
        )
    return name


def split_name(resolution: int) -> str:
    return f"res{resolution}"


def _tfds():
    """tensorflow_datasets, the writer of prepared datasets (reading them does not need it)."""
    return dependencies.require("tensorflow_datasets", "preparing a dataset")


def features_for(channels: int):
    """The tfds features of every split (a FeaturesDict): image uint8 [r, r, channels] (raw bytes), label int64."""
    tfds = _tfds()
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Tensor(
                shape=(None, None, channels), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
            ),
            "label": tfds.features.Scalar(dtype=np.int64),
        }
    )


def shard_path(directory: str, name: str, resolution: int, shard: int, num_shards: int) -> str:
    return os.path.join(directory, f"{name}-{split_name(resolution)}.array_record-{shard:05d}-of-{num_shards:05d}")


@dataclasses.dataclass(frozen=True)
class PreparationSummary:
    """What a preparation produced. skipped: 'item: reason' for the first MAX_REPORTED_SKIPS skips."""

    path: str
    num_examples: int
    num_skipped: int
    skipped: tuple[str, ...]
    resolution: int

    def report(self) -> str:
        """A short human-readable report (several lines)."""
        lines = [f"Prepared {self.num_examples} images at {self.resolution}x{self.resolution} in {self.path}"]
        if self.num_skipped:
            lines.append(f"Skipped {self.num_skipped} unreadable images; the first ones:")
            lines += [f"  {entry}" for entry in self.skipped]
        return "\n".join(lines)


def _marker_path(work_dir: str, shard: int) -> str:
    return os.path.join(work_dir, f"shard-{shard:05d}.done.json")


def _write_json(path: str, content: dict) -> None:
    """Writes JSON atomically (temporary file, then rename)."""
    with open(path + ".tmp", "w") as file:
        json.dump(content, file, indent=1)
    os.replace(path + ".tmp", path)


def _write_shard(
    source: Source,
    items: list,
    shard: int,
    num_shards: int,
    work_dir: str,
    name: str,
    on_item: Callable[[], None] | None = None,
) -> dict:
    """Loads `items`, writes all their levels to shard `shard`, then its marker. Returns the marker."""
    features = features_for(source.channels)
    levels = imaging.level_resolutions(source.resolution)
    array_record_module = dependencies.require("array_record.python.array_record_module", "preparing a dataset")
    writers = {
        r: array_record_module.ArrayRecordWriter(shard_path(work_dir, name, r, shard, num_shards), WRITER_OPTIONS)
        for r in levels
    }
    num_examples, skipped = 0, []
    try:
        for item in items:
            try:
                image, label = source.load(item)
            except UnreadableImageError as error:
                skipped.append(f"{source.item_name(item)}: {error}")
            else:
                expected = (source.resolution, source.resolution, source.channels)
                if image.shape != expected or image.dtype != np.uint8:
                    raise AssertionError(
                        f"{type(source).__name__} returned {image.dtype} {image.shape}, expected uint8 {expected}"
                    )
                for r, level in imaging.box_pyramid(image).items():
                    writers[r].write(features.serialize_example({"image": level, "label": label}))
                num_examples += 1
            if on_item:
                on_item()
    finally:
        for writer in writers.values():
            writer.close()
    marker = {"num_examples": num_examples, "num_skipped": len(skipped), "skipped": skipped[:MAX_REPORTED_SKIPS]}
    _write_json(_marker_path(work_dir, shard), marker)
    return marker


def _plan(items: list, source: Source, max_examples: int | None) -> tuple[list, int]:
    """The shuffled item list and the shard size: (items, examples_per_shard).

    Depends on the source only (not on the machine or the worker count), so any re-run can resume.
    """
    order = np.random.default_rng(PREPARE_SHUFFLE_SEED).permutation(len(items))
    items = [items[i] for i in order[:max_examples]]
    image_bytes = source.resolution**2 * source.channels
    per_shard = max(1, min(SHARD_BYTES // image_bytes, math.ceil(len(items) / MIN_SHARDS)))
    return items, per_shard


def _request(source: Source, name: str, items: list, per_shard: int, max_examples: int | None) -> dict:
    digest = hashlib.sha256(json.dumps(items).encode()).hexdigest()
    return {
        "format_version": VERSION,
        "name": name,
        "source": source.describe(),
        "max_examples": max_examples,
        "num_items": len(items),
        "items_sha256": digest,
        "examples_per_shard": per_shard,
    }


def _claim_work_dir(work_dir: str, request: dict) -> None:
    """Creates the work directory, or checks that the interrupted preparation in it is this one."""
    request_path = os.path.join(work_dir, _REQUEST_FILE)
    if os.path.exists(request_path):
        with open(request_path) as file:
            previous = json.load(file)
        if previous != request:
            raise PreparationConflictError(
                f"{work_dir} holds an interrupted preparation with other settings or source contents "
                f"({previous['source']}); delete that directory to start over"
            )
        return
    os.makedirs(work_dir, exist_ok=True)
    _write_json(request_path, request)


def _run_shards(source, shards, work_dir, name, num_workers, progress):
    """Writes the shards without a marker; returns {shard index: marker}."""
    markers, pending = {}, []
    for index in range(len(shards)):
        if os.path.exists(_marker_path(work_dir, index)):
            with open(_marker_path(work_dir, index)) as file:
                markers[index] = json.load(file)
        else:
            pending.append(index)
    done = sum(m["num_examples"] + m["num_skipped"] for m in markers.values())
    total = sum(len(shard) for shard in shards)
    with tqdm(total=total, initial=done, unit="img", desc=f"Preparing {name}", disable=not progress) as bar:
        if num_workers <= 1:
            for index in pending:
                markers[index] = _write_shard(
                    source, shards[index], index, len(shards), work_dir, name, on_item=lambda: bar.update(1)
                )
            return markers
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold JAX threads
        with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
            futures = {pool.submit(_write_shard, source, shards[i], i, len(shards), work_dir, name): i for i in pending}
            for future in concurrent.futures.as_completed(futures):
                markers[futures[future]] = future.result()
                bar.update(len(shards[futures[future]]))
    return markers


def _finalize(
    source: Source, name: str, work_dir: str, final_dir: str, shards: list, markers: dict
) -> PreparationSummary:
    """Writes the tfds metadata, renames work_dir to final_dir and returns the summary."""
    lengths = [markers[i]["num_examples"] for i in range(len(shards))]
    num_examples = sum(lengths)
    num_skipped = sum(m["num_skipped"] for m in markers.values())
    skipped = tuple(entry for i in range(len(shards)) for entry in markers[i]["skipped"])[:MAX_REPORTED_SKIPS]
    if num_examples == 0:
        shutil.rmtree(work_dir)
        raise SourceError(f"none of the {num_skipped} images could be read (first: {skipped[0]})")
    levels = imaging.level_resolutions(source.resolution)
    tfds = _tfds()
    split_infos = [
        tfds.core.SplitInfo(
            name=split_name(r),
            shard_lengths=lengths,
            num_bytes=sum(os.path.getsize(shard_path(work_dir, name, r, i, len(shards))) for i in range(len(shards))),
        )
        for r in levels
    ]
    metadata = tfds.core.MetadataDict(
        resolution=source.resolution,
        channels=source.channels,
        num_classes=source.num_classes,
        class_names=list(source.class_names),
        levels=levels,
        source=source.describe(),
        num_examples=num_examples,
        num_skipped=num_skipped,
        skipped=list(skipped),
    )
    tfds.folder_dataset.write_metadata(
        data_dir=work_dir,
        features=features_for(source.channels),
        split_infos=split_infos,
        version=VERSION,
        check_data=False,
        description=f"PGGAN levels of detail 4..{source.resolution} of {source.describe()}",
        metadata=metadata,
    )
    for index in range(len(shards)):
        os.remove(_marker_path(work_dir, index))
    os.remove(os.path.join(work_dir, _REQUEST_FILE))
    os.rename(work_dir, final_dir)
    return PreparationSummary(
        path=final_dir,
        num_examples=num_examples,
        num_skipped=num_skipped,
        skipped=skipped,
        resolution=source.resolution,
    )


def _auto_workers(num_items: int, source: Source) -> int:
    if num_items * source.resolution**2 * source.channels < SMALL_SOURCE_BYTES:
        return 1
    return os.cpu_count() or 1


def prepare_dataset(
    source: Source,
    data_dir: str,
    name: str | None = None,
    *,
    num_workers: int | None = None,
    max_examples: int | None = None,
    progress: bool = True,
) -> PreparationSummary:
    """Prepares `source` as dataset `name` (default: source.default_name()) under `data_dir`.

    num_workers: processes writing shards in parallel (1: in this process; None: one per CPU core,
      or 1 for sources under SMALL_SOURCE_BYTES).
    max_examples: keep only this many (randomly chosen, deterministic) items.
    Raises PreparationConflictError if the dataset exists already or an interrupted preparation with
    other settings is in the way, SourceError if the source is empty or nothing could be read.
    """
    name = check_name(name or source.default_name())
    dataset_dir = os.path.join(os.path.expanduser(data_dir), name)
    final_dir = os.path.join(dataset_dir, VERSION)
    work_dir = os.path.join(dataset_dir, f"incomplete.{VERSION}")
    if os.path.exists(final_dir):
        raise PreparationConflictError(
            f"dataset {name} is already prepared in {final_dir}; delete that directory to prepare it again"
        )
    items = source.list_items()
    num_workers = num_workers or _auto_workers(min(len(items), max_examples or len(items)), source)
    items, per_shard = _plan(items, source, max_examples)
    _claim_work_dir(work_dir, _request(source, name, items, per_shard, max_examples))
    shards = [items[start : start + per_shard] for start in range(0, len(items), per_shard)]
    markers = _run_shards(source, shards, work_dir, name, num_workers, progress)
    return _finalize(source, name, work_dir, final_dir, shards, markers)
