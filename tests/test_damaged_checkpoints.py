"""Checkpoints damaged on disk: checksum manifests, fallback to the newest intact checkpoint, tools.

One real tiny run (8x8, asynchronous checkpoints at 160, 256 and 384 images) is trained once; each
test damages a copy of its workdir the way disks and people do (a truncated, deleted or overwritten
array file, a metadata JSON cut in half) and runs the same training command or a tool on it.
"""

import glob
import json
import logging
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from pggan import checkpoint, checksums
from pggan.model import networks
from pggan.training import loop, train_state
from pggan.training.config import TrainingConfig
from tests import tool_support
from tests.run_support import REPO, subprocess_env
from tests.training_support import complete_steps, final_state, tiny_config

pytestmark = pytest.mark.slow  # training runs whose checkpoints are damaged

STEPS = [160, 256, 384]
NEWEST = os.path.join("checkpoints", str(STEPS[-1]))
OVERRIDES = {
    "model.resolution": 8,
    "schedule.total_kimg": STEPS[-1] / 1000,
    "checkpoint.every_ticks": 1,
    "checkpoint.async_save": True,
    "samples.every_ticks": 1000,
}


def _config(data_dir):
    """The tiny recipe at 8x8 with an (asynchronous) checkpoint every tick of 128 images."""
    config = tiny_config(data_dir)
    for field, value in OVERRIDES.items():
        section, name = field.split(".")
        config[section][name] = value
    return config


def _train(data_dir, workdir):
    loop.train_and_evaluate(_config(data_dir), workdir, devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data_dir, workdir of a finished run, its final state)."""
    root = tmp_path_factory.mktemp("damage")
    data_dir, workdir = str(root / "data"), str(root / "run")
    _train(data_dir, workdir)
    return data_dir, workdir, final_state(workdir)[0]


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run's workdir."""
    workdir = str(tmp_path / "run")
    shutil.copytree(trained[1], workdir)
    return workdir


def _largest_array_file(step_dir: str) -> str:
    return max(glob.glob(os.path.join(step_dir, "generator_ema", "ocdbt.process_0", "d", "*")), key=os.path.getsize)


def _damage(step_dir: str, kind: str) -> None:
    array, meta = _largest_array_file(step_dir), os.path.join(step_dir, "meta", "metadata")
    if kind == "truncate":
        os.truncate(array, os.path.getsize(array) // 2)
    elif kind == "delete":
        os.remove(array)
    elif kind == "half_meta":
        os.truncate(meta, os.path.getsize(meta) // 2)
    elif kind == "item_metadata":  # an item's own metadata JSON, which Orbax reads before any array
        with open(os.path.join(step_dir, "generator_ema", "_sharding"), "r+b") as f:
            f.seek(100)
            f.write(b"XXXXXXXX")
    else:  # 8 bytes overwritten in the middle of an array file: same size, other contents
        with open(array, "r+b") as f:
            f.seek(os.path.getsize(array) // 2)
            f.write(b"\xde\xad\xbe\xef" * 2)


def _tree(directory: str) -> dict[str, bytes]:
    """Every file under directory: relative path -> contents."""
    return {
        os.path.relpath(p, directory): open(p, "rb").read()
        for p in glob.glob(os.path.join(directory, "**"), recursive=True)
        if os.path.isfile(p)
    }


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_every_checkpoint_has_a_manifest_of_all_its_files_that_verifies(trained):
    _, workdir, _ = trained
    assert complete_steps(workdir) == STEPS
    for step in STEPS:
        step_dir = os.path.join(workdir, "checkpoints", str(step))
        files = checksums.read_manifest(step_dir)
        assert sorted(files) == sorted(_tree(step_dir).keys() - {checksums.MANIFEST})
        assert any(name.startswith("optimizers/") for name in files) and "meta/metadata" in files
        assert checksums.find_damage(step_dir, files) is None
    # Only step directories get a manifest (Orbax finalizes the item directories the same way).
    assert len(glob.glob(os.path.join(workdir, "checkpoints", "**", checksums.MANIFEST), recursive=True)) == 3


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("truncate", r"generator_ema/ocdbt.process_0/d/\w+ has \d+ bytes instead of \d+"),
        ("delete", r"generator_ema/ocdbt.process_0/d/\w+ is missing"),
        ("half_meta", r"meta/metadata has \d+ bytes instead of \d+"),
        ("overwrite", r"generator_ema/ocdbt.process_0/d/\w+ does not match its SHA-256 checksum"),
        ("item_metadata", r"generator_ema/_sharding does not match its SHA-256 checksum"),
    ],
)
def test_training_sets_a_damaged_checkpoint_aside_and_continues_exactly_from_the_older_one(
    trained, run, kind, reason, caplog
):
    data_dir, _, uninterrupted = trained
    _damage(os.path.join(run, NEWEST), kind)
    damaged = _tree(os.path.join(run, NEWEST))
    caplog.set_level(logging.INFO, logger="absl")
    _train(data_dir, run)
    aside = os.path.join(run, "checkpoints", checksums.DAMAGED_DIR, str(STEPS[-1]))
    [warning] = [w for w in _warnings(caplog) if "is damaged" in w]
    assert "\n" not in warning
    pattern = (
        rf"checkpoint 384 in {run}/checkpoints is damaged: {reason}; moved it to {aside}, "
        "trying the next older checkpoint."
    )
    assert re.fullmatch(pattern, warning), warning
    assert any(r.getMessage().startswith("Resuming from checkpoint 256 ") for r in caplog.records)
    assert _tree(aside) == damaged  # left as it was, only renamed
    assert complete_steps(run) == STEPS  # 384 written again, intact
    assert checksums.find_damage(os.path.join(run, NEWEST), checksums.read_manifest(os.path.join(run, NEWEST))) is None
    resumed, _ = final_state(run)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(uninterrupted)):
        np.testing.assert_array_equal(a, b)


def test_a_second_damaged_copy_of_a_step_is_kept_beside_the_first(run):
    step_dir = os.path.join(run, NEWEST)
    first = checksums.set_aside(step_dir)
    shutil.copytree(first, step_dir)
    second = checksums.set_aside(step_dir)
    assert [os.path.basename(p) for p in (first, second)] == ["384", "384-2"]
    assert checksums.set_aside_names(os.path.join(run, "checkpoints")) == ["384", "384-2"]


def test_without_an_intact_checkpoint_the_run_stops_in_one_line_every_time(trained, run):
    for step in STEPS:
        _damage(os.path.join(run, "checkpoints", str(step)), "overwrite")
    command = [
        sys.executable,
        "-m",
        "pggan.main",
        "--config=configs/tiny.py",
        f"--workdir={run}",
        f"--config.dataset.data_dir={trained[0]}",
        *(f"--config.{k}={v}" for k, v in OVERRIDES.items()),
    ]
    env = subprocess_env(1)
    for attempt in range(2):  # the first start moves them aside, the second finds only damaged/
        result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last == (
            f"error: no intact checkpoint in {run}/checkpoints: the damaged ones (160, 256, 384) are in "
            f"{run}/checkpoints/damaged; copy intact checkpoints into {run}/checkpoints to resume, or "
            f"move {run}/checkpoints/damaged away to train from scratch"
        )
        assert sum("is damaged" in line for line in result.stderr.splitlines()) == (3 if attempt == 0 else 0)
    assert complete_steps(run) == []


def test_generate_skips_a_damaged_checkpoint_and_refuses_it_when_asked_for(run, tmp_path, caplog, capsys):
    _damage(os.path.join(run, NEWEST), "truncate")
    before = _tree(run)
    caplog.set_level(logging.WARNING, logger="absl")
    out = str(tmp_path / "grid.png")
    assert tool_support.run_main("generate", f"--workdir={run}", "--grid=2x2", f"--out={out}") == 0
    assert "checkpoint at 0.3 kimg" in capsys.readouterr().out  # 256, the newest intact one
    [warning] = [w for w in _warnings(caplog) if "is damaged" in w]
    assert warning.startswith(f"checkpoint 384 in {run}/checkpoints is damaged: ")
    assert warning.endswith("; skipping it.")
    assert tool_support.run_main("generate", f"--workdir={run}", "--grid=2x2", f"--out={out}", "--step=384") == 1
    [error] = capsys.readouterr().err.strip().splitlines()
    assert error.startswith(f"error: checkpoint 384 in {run}/checkpoints is damaged: generator_ema/")
    assert error.endswith("; choose another step (available: [160, 256, 384])")
    assert _tree(run) == before  # tools move nothing: a training run may be using the workdir


def test_readers_skip_or_refuse_damaged_checkpoints(run, caplog):
    _damage(os.path.join(run, NEWEST), "overwrite")
    caplog.set_level(logging.WARNING, logger="absl")
    with checkpoint.CheckpointReader(run) as reader:
        assert reader.select() == 384  # listing alone reads no file
        assert reader.select(network="ema") == 256
        assert reader.select(network="raw") == 384  # the raw generator's files are intact
        assert reader.intact(STEPS) == [160, 256]
        assert reader.meta(384)["nimg"] == 384  # the metadata is intact
    with pytest.raises(checkpoint.CheckpointDamaged, match="is damaged"):
        checkpoint.load_generator(run, step=384)
    _, meta = checkpoint.load_generator(run)
    assert meta["step"] == 256


def test_a_checkpoint_without_its_manifest_is_damaged_unless_it_predates_checksums(run, caplog):
    step_dir = os.path.join(run, NEWEST)
    os.remove(os.path.join(step_dir, checksums.MANIFEST))
    with pytest.raises(checkpoint.CheckpointDamaged, match="its checksum manifest checksums.json is missing"):
        checkpoint.load_generator(run, step=384)
    # A checkpoint written before checksums: no manifest and no mark in its step metadata.
    metadata_path = os.path.join(step_dir, "_CHECKPOINT_METADATA")
    metadata = json.load(open(metadata_path))
    del metadata["custom_metadata"][checkpoint.CHECKSUMS_KEY]
    json.dump(metadata, open(metadata_path, "w"))
    caplog.set_level(logging.WARNING, logger="absl")
    _, meta = checkpoint.load_generator(run, step=384)
    assert meta["step"] == 384
    assert f"Checkpoint {step_dir} predates checksums: reading it unverified." in _warnings(caplog)
    # Unverified, it is damaged when it fails to load. (A metadata JSON cut in half: a missing array
    # file fails too, but Orbax's other reads then fail after its event loop closed, and Python prints
    # them whenever they are garbage-collected.)
    _damage(step_dir, "half_meta")
    with pytest.raises(checkpoint.CheckpointDamaged, match=r"is damaged: it does not load \(Unterminated string"):
        checkpoint.load_generator(run, step=384)


def test_a_checkpoint_with_the_per_pixel_bias_of_pggan_0_1_is_refused_in_one_line_and_left_alone(trained, tmp_path):
    """pggan 0.1 gave G's 4x4 dense layer one bias per output (16 x C values) instead of the official one per
    channel; such a checkpoint (written here with that shape) is refused, never loaded or moved aside."""
    data_dir, _, _ = trained
    workdir = str(tmp_path / "old")
    config = TrainingConfig.parse(_config(data_dir))
    g, d = networks.build_networks(config.model, seed=0)
    g = networks.parameters(g)
    channels = g["blocks"][0]["dense"]["bias"].shape[0]
    g["blocks"][0]["dense"]["bias"] = np.zeros(16 * channels, np.float32)
    store = checkpoint.CheckpointStore(workdir, async_save=False)
    progress = train_state.Progress(nimg=64, phase=train_state.imported_phase(config.model, 64, 8, 1.0))
    store.save(64, train_state.new_state(g, networks.parameters(d), g), progress.to_meta(config))
    store.close()
    expected = (
        f"checkpoint {workdir}/checkpoints/64 was written by pggan 0.1, whose generator had one 4x4 bias per "
        f"pixel ({16 * channels} values) instead of the official one per channel ({channels}); this version "
        "cannot load it"
    )
    with pytest.raises(checkpoint.CheckpointError) as error:
        checkpoint.load_generator(workdir)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)
    with pytest.raises(checkpoint.CheckpointError, match=re.escape(expected)):
        loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    assert complete_steps(workdir) == [64] and not os.path.exists(os.path.join(workdir, "checkpoints", "damaged"))
