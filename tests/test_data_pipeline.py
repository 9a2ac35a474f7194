"""The training input: global batches, resume from checkpoints, on-device sampling, device ops."""

import json
import os
import subprocess
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import PartitionSpec as P
from sklearn.datasets import load_digits

from pggan import parallel
from pggan.data import augment, device_dataset, order, pipeline
from pggan.data import config as data_config
from pggan.data.errors import DataError
from pggan.training.config import DatasetConfig
from tests.run_support import subprocess_env
from tests.training_support import free_port

SEED = 42
RESOLUTION = 32


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The quickstart digits, auto-prepared from the default dataset config into a fresh data_dir."""
    config = DatasetConfig(data_dir=str(tmp_path_factory.mktemp("tfds")))
    return data_config.open_from_config(config, resolution=RESOLUTION, channels=3, label_size=10)


@pytest.fixture(scope="module")
def mesh():
    return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _reference_batch(ds, resolution, start, size):
    """Independent of the pipeline's reader: tfds's own decoder at the stream's example indices."""
    source = ds.data_source(resolution)
    indices = order.example_indices(np, np.arange(start, start + size), ds.num_examples, SEED)
    examples = [source[int(i)] for i in indices]
    return np.stack([e["image"] for e in examples]), np.array([e["label"] for e in examples])


def _numpy(batch):
    return np.asarray(batch["images"]), np.asarray(batch["labels"])


def test_digits_are_prepared_on_first_use(digits):
    assert (digits.name, digits.resolution, digits.num_examples, digits.num_classes) == ("digits", 32, 1797, 10)
    images, labels = digits.read_level(32)
    assert images.dtype == np.uint8 and images.max() > 200 and images[:, :2].max() == 0  # black frame
    np.testing.assert_array_equal(np.bincount(labels), np.bincount(load_digits().target))


def test_global_batches_are_sharded_and_follow_the_stream(digits, mesh):
    iterator = data_config.iterator_from_config(
        DatasetConfig(), digits, resolution=16, batch_size=64, mesh=mesh, seed=SEED, position=1760
    )
    batch = next(iterator)  # positions 1760..1823 cross the end of epoch 0
    iterator.close()
    assert batch["images"].shape == (64, 16, 16, 3) and batch["images"].dtype == jnp.uint8
    assert batch["labels"].dtype == jnp.int32
    assert batch["images"].sharding.spec == P("data") and len(batch["images"].addressable_shards) == 8
    images, labels = _numpy(batch)
    want_images, want_labels = _reference_batch(digits, 16, 1760, 64)
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
    assert iterator.position == 1824


def test_restore_from_orbax_checkpoint_continues_exactly(digits, mesh, tmp_path):
    uninterrupted = pipeline.InputIterator(digits, resolution=RESOLUTION, batch_size=16, mesh=mesh, seed=SEED)
    expected = [_numpy(next(uninterrupted)) for _ in range(5)]
    uninterrupted.close()

    first = pipeline.InputIterator(digits, resolution=RESOLUTION, batch_size=16, mesh=mesh, seed=SEED)
    for _ in range(2):
        next(first)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(2, args=ocp.args.Composite(input=grain.checkpoint.CheckpointSave(first)))
        manager.wait_until_finished()
    for _ in range(2):
        next(first)  # runs on after the save; must not matter
    first.close()

    restored = pipeline.InputIterator(digits, resolution=RESOLUTION, batch_size=16, mesh=mesh, seed=SEED)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.restore(2, args=ocp.args.Composite(input=grain.checkpoint.CheckpointRestore(restored)))
    assert restored.position == 32
    for want in expected[2:]:
        got = _numpy(next(restored))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    restored.close()


def test_new_batch_size_and_resolution_continue_the_same_stream(digits, mesh):
    small = pipeline.InputIterator(digits, resolution=RESOLUTION, batch_size=8, mesh=mesh, seed=SEED)
    state = json.loads(json.dumps(small.get_state()))  # JSON round trip, as in a checkpoint
    small.close()
    bigger = pipeline.InputIterator(digits, resolution=8, batch_size=16, mesh=mesh, seed=SEED)
    bigger.set_state(state)
    images, labels = _numpy(next(bigger))
    bigger.close()
    want_images, want_labels = _reference_batch(digits, 8, 0, 16)
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
    with pytest.raises(DataError, match="seed=7"):
        bigger.set_state({**state, "seed": 7})


def test_batch_size_must_divide_over_devices(digits, mesh):
    with pytest.raises(DataError, match="not divisible by the 8 devices"):
        pipeline.InputIterator(digits, resolution=RESOLUTION, batch_size=12, mesh=mesh, seed=SEED)


def test_on_device_sampling_equals_host_pipeline(digits, mesh):
    assert device_dataset.should_hold_on_device("auto", digits, RESOLUTION, mesh)
    assert not device_dataset.should_hold_on_device("never", digits, RESOLUTION, mesh)
    with pytest.raises(DataError, match="on_device"):
        device_dataset.should_hold_on_device("sometimes", digits, RESOLUTION, mesh)
    level = device_dataset.load_level_to_device(digits, RESOLUTION, mesh)
    batch_size, per_device, start = 64, 8, 1776  # crosses the epoch boundary at 1797
    host = pipeline.InputIterator(
        digits, resolution=RESOLUTION, batch_size=batch_size, mesh=mesh, seed=SEED, position=start
    )
    host_images, host_labels = _numpy(next(host))
    host.close()

    @jax.jit
    def sample_per_device(images, labels, position):
        def local(images, labels):  # what a trainer's shard_map'ed step does
            device_start = position + jax.lax.axis_index("data").astype(jnp.uint32) * per_device
            positions = device_start + jnp.arange(per_device, dtype=jnp.uint32)
            return device_dataset.sample_examples(images, labels, SEED, positions)

        return jax.shard_map(local, mesh=mesh, in_specs=(P(), P()), out_specs=(P("data"), P("data")))(images, labels)

    images, labels = sample_per_device(level.images, level.labels, jnp.uint32(start))
    np.testing.assert_array_equal(np.asarray(images), host_images)
    np.testing.assert_array_equal(np.asarray(labels), host_labels)


def test_max_images_serves_exactly_the_first_n_images_in_a_fixed_order(digits, mesh):
    data_dir = os.path.dirname(os.path.dirname(digits.path))  # <data_dir>/digits/<version>
    count = 300  # the digits' shards hold 225 images: the cut crosses a shard
    first = data_config.open_from_config(
        DatasetConfig(data_dir=data_dir, max_images=count), resolution=RESOLUTION, channels=3, label_size=10
    )
    assert first.num_examples == count
    for resolution in first.levels:
        source = digits.data_source(resolution)  # tfds's reader, independent of ours
        images, labels = first.read_level(resolution)
        np.testing.assert_array_equal(images, np.stack([source[i]["image"] for i in range(count)]))
        np.testing.assert_array_equal(labels, [source[i]["label"] for i in range(count)])
    with pytest.raises(IndexError):
        first.level(16).read([count])
    # two epochs through the host pipeline: each epoch is a permutation of exactly images 0..count-1
    iterator = pipeline.InputIterator(first, resolution=16, batch_size=40, mesh=mesh, seed=SEED)
    served = np.concatenate([_numpy(next(iterator))[0] for _ in range(2 * count // 40)])
    iterator.close()
    indices = order.example_indices(np, np.arange(2 * count), count, SEED)
    assert sorted(indices[:count]) == sorted(indices[count:]) == list(range(count))
    np.testing.assert_array_equal(served, digits.read_level(16)[0][indices])
    level = device_dataset.load_level_to_device(first, 16, mesh)
    images, _ = device_dataset.sample_examples(level.images, level.labels, SEED, jnp.arange(2 * count))
    np.testing.assert_array_equal(np.asarray(images), served)
    for max_images, error, message in (
        (1798, DataError, "config.dataset.max_images=1798 but dataset digits has 1797 images: set at most 1797"),
        (-1, ValueError, "config.dataset.max_images must be an integer >= 0"),
    ):
        with pytest.raises(error) as raised:
            data_config.open_from_config(DatasetConfig(data_dir=data_dir, max_images=max_images), resolution=16)
        assert message in str(raised.value) and "\n" not in str(raised.value)


def test_to_float_and_mirror():
    pixels = jnp.array([0, 1, 127, 128, 254, 255], jnp.uint8)
    floats = np.asarray(augment.to_float(pixels))
    assert floats.dtype == np.float32 and floats[0] == -1 and floats[-1] == 1
    np.testing.assert_allclose(floats, np.array([0, 1, 127, 128, 254, 255]) / 127.5 - 1, rtol=0, atol=1e-6)
    images = np.random.default_rng(0).integers(0, 256, (6, 4, 5, 3)).astype(np.uint8)
    flip = np.array([True, False, True, True, False, False])
    mirrored = np.asarray(jax.jit(augment.mirror)(jnp.asarray(images), jnp.asarray(flip)))
    np.testing.assert_array_equal(mirrored[flip], images[flip][:, :, ::-1])
    np.testing.assert_array_equal(mirrored[~flip], images[~flip])


def test_strided_row_order_puts_samples_on_their_devices(digits, mesh):
    order_ = parallel.device_major_order(32, 8)
    plain = pipeline.InputIterator(digits, resolution=RESOLUTION, batch_size=32, mesh=mesh, seed=SEED)
    strided = pipeline.InputIterator(
        digits, resolution=RESOLUTION, batch_size=32, mesh=mesh, seed=SEED, row_order=order_
    )
    (plain_images, plain_labels), (strided_images, strided_labels) = _numpy(next(plain)), _numpy(next(strided))
    plain.close()
    strided.close()
    np.testing.assert_array_equal(strided_images, plain_images[order_])
    np.testing.assert_array_equal(strided_labels, plain_labels[order_])


_TWO_PROCESS_SCRIPT = """
import json, sys
import jax, numpy as np
jax.config.update("jax_cpu_collectives_implementation", "gloo")
process_id, port, data_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
from pggan.data import dataset, pipeline
ds = dataset.open_dataset("digits", data_dir)
mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
iterator = pipeline.InputIterator(ds, resolution=8, batch_size=32, mesh=mesh, seed=42, position=1790)
batch = next(iterator)
shards = sorted((s.index[0].start, np.asarray(s.data).tolist()) for s in batch["labels"].addressable_shards)
image_sums = [int(np.asarray(s.data).astype(np.int64).sum()) for s in batch["images"].addressable_shards]
print(json.dumps({"shards": shards, "image_sum": sum(image_sums)}))
iterator.close()
"""


def test_two_processes_read_disjoint_parts_of_each_global_batch(digits, tmp_path):
    """Two real JAX processes (4 CPU devices each) share a global batch: disjoint rows, full cover."""
    data_dir = os.path.dirname(os.path.dirname(digits.path))
    script = tmp_path / "worker.py"
    script.write_text(_TWO_PROCESS_SCRIPT)
    port = str(free_port())
    env = subprocess_env(4)
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(i), port, data_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-2000:]
    results = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    rows = {start: labels for result in results for start, labels in result["shards"]}
    assert sorted(rows) == list(range(0, 32, 4))  # 8 device shards of 4 rows, none twice
    process_rows = [{start for start, _ in result["shards"]} for result in results]
    assert process_rows[0].isdisjoint(process_rows[1])
    want_images, want_labels = _reference_batch(digits, 8, 1790, 32)
    np.testing.assert_array_equal(np.concatenate([rows[start] for start in sorted(rows)]), want_labels)
    assert sum(result["image_sum"] for result in results) == int(want_images.astype(np.int64).sum())
