r"""Benchmarks. One function per mode; `--input_only` measures the host input pipeline.

  python tools/benchmark.py --input_only --resolutions=32,256,1024

Input mode: for each resolution, reads global batches from a prepared dataset (default: synthetic
images prepared once into --data_dir, sized to sit in the page cache) through the training input
pipeline, onto all local devices, and reports images/s, MiB/s and the process's CPU time per image
(all threads; a steadier figure than images/s on a shared machine) after a warm-up.
"""

import os
import sys
import tempfile
import time

import jax
from absl import app, flags
from tqdm import tqdm

from pggan.data import dataset as dataset_lib
from pggan.data import pipeline, sources
from pggan.data.errors import DataError

_INPUT_ONLY = flags.DEFINE_bool("input_only", False, "Measure the input pipeline only (images/s per resolution).")
_RESOLUTIONS = flags.DEFINE_list("resolutions", ["32", "128", "1024"], "Resolutions to measure.")
_DATASET = flags.DEFINE_string("dataset", None, "Prepared dataset to read (its levels). Default: synthetic "
                               "datasets prepared on first use, one per resolution.")
_DATA_DIR = flags.DEFINE_string("data_dir", os.path.join(tempfile.gettempdir(), "pggan_benchmark_data"),
                                "Where the benchmark datasets are (prepared if missing).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Global batch size; 0: the official 8-GPU minibatch of "
                                   "each resolution (4:512, 8:256, 16:128, 32:64, 64 and up: 32).")
_SECONDS = flags.DEFINE_float("seconds", 5.0, "Measuring time per resolution, after warm-up.")
_NUM_THREADS = flags.DEFINE_integer("num_threads", 2, "Input pipeline reader threads.")
_PREFETCH = flags.DEFINE_integer("prefetch_batches", 4, "Input pipeline read-ahead, in batches.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 0, "Images per synthetic dataset; 0: as many as take 1 GiB "
                                     "at that resolution, between 64 and 20,000.")

OFFICIAL_MINIBATCH_8GPU = {4: 512, 8: 256, 16: 128, 32: 64}
WARMUP_BATCHES = 5


def _dataset_for(resolution: int) -> dataset_lib.PreparedDataset:
    if _DATASET.value:
        return dataset_lib.open_dataset(_DATASET.value, _DATA_DIR.value)
    count = _NUM_EXAMPLES.value or max(64, min(20_000, (1 << 30) // (resolution * resolution * 3)))
    source = sources.make_source("synthetic", resolution=resolution, num_examples=count)
    return dataset_lib.open_dataset(f"synthetic_{resolution}_n{count}", _DATA_DIR.value,
                                    prepare_if_missing_from=source)


def measure_input(resolution: int) -> dict:
    """Images/s of the host input pipeline at one resolution, delivered as global jax.Arrays."""
    dataset = _dataset_for(resolution)
    mesh = jax.make_mesh((jax.device_count(),), (pipeline.DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    batch_size = _BATCH_SIZE.value or OFFICIAL_MINIBATCH_8GPU.get(resolution, 32)
    batch_size = -(-batch_size // jax.device_count()) * jax.device_count()
    iterator = pipeline.InputIterator(dataset, resolution=resolution, batch_size=batch_size, mesh=mesh, seed=0,
                                      num_threads=_NUM_THREADS.value, prefetch_batches=_PREFETCH.value)
    for _ in range(WARMUP_BATCHES):
        jax.block_until_ready(next(iterator))
    images, start, cpu_start = 0, time.perf_counter(), time.process_time()
    with tqdm(desc=f"input {resolution}px", unit="img", leave=False) as bar:
        while time.perf_counter() - start < _SECONDS.value:
            batch = next(iterator)
            images += batch_size
            bar.update(batch_size)
        jax.block_until_ready(batch)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    iterator.close()
    image_mib = resolution * resolution * dataset.channels / 2**20
    return {"resolution": resolution, "batch_size": batch_size, "img_per_s": images / seconds,
            "mib_per_s": images * image_mib / seconds, "cpu_ms_per_img": 1000 * cpu_seconds / images,
            "num_examples": dataset.num_examples}


def run_input_benchmark() -> None:
    print(f"Input pipeline on {jax.device_count()} {jax.devices()[0].platform} device(s), "
          f"{os.cpu_count()} CPU cores, {_NUM_THREADS.value} reader threads")
    print(f"{'resolution':>10} {'batch':>6} {'img/s':>10} {'MiB/s':>8} {'cpu ms/img':>11} {'examples':>9}")
    for resolution in (int(r) for r in _RESOLUTIONS.value):
        result = measure_input(resolution)
        print(f"{result['resolution']:>10} {result['batch_size']:>6} {result['img_per_s']:>10.0f} "
              f"{result['mib_per_s']:>8.0f} {result['cpu_ms_per_img']:>11.3f} {result['num_examples']:>9}", flush=True)


def main(argv):
    del argv
    if not _INPUT_ONLY.value:
        sys.exit("error: choose a mode: --input_only (the training-step benchmark is not available yet)")
    try:
        run_input_benchmark()
    except DataError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    app.run(main)
