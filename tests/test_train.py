"""End-to-end training runs of the tiny recipe: stages, checkpoints, samples, exact resume."""

import json
import logging
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from pggan import checkpoint
from pggan.errors import UserError
from pggan.training import loop, run_length
from pggan.training.validation import plan_run
from tests.run_support import REPO, subprocess_env
from tests.training_support import final_state, tensorboard_events, tiny_config

pytestmark = pytest.mark.slow  # multi-stage training runs


def test_tiny_run_on_eight_devices_writes_every_stage(tiny_data_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="absl")  # a tool run earlier in this process may have raised it
    workdir = str(tmp_path / "run8")
    loop.train_and_evaluate(tiny_config(tiny_data_dir), workdir)
    assert len(jax.devices()) == 8
    with checkpoint.CheckpointReader(workdir) as reader:
        steps = reader.stage_final_steps()
        resolutions = [reader.meta(s)["resolution"] for s in steps]
        at_8 = reader.select(resolution=8)
    assert resolutions == [4, 8, 16]
    assert at_8 == steps[1]
    state, meta = final_state(workdir)
    assert meta["nimg"] == 768 and meta["phase"]["alpha"] == 1.0
    for leaf in jax.tree.leaves(state):
        assert np.isfinite(leaf).all()
    samples = sorted(os.listdir(os.path.join(workdir, "samples")))
    assert {"reals_res0004.png", "reals_res0008.png", "reals_res0016.png"} <= set(samples)
    assert any(name.startswith("fakes_kimg") for name in samples)
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    assert json.load(open(os.path.join(workdir, "config.json")))["model"]["resolution"] == 16
    # The log states the plan, says what it compiles and when that is done, and has a progress line in
    # every stage.
    log = [r.getMessage() for r in caplog.records]
    assert (
        "Plan: 4x4 -> 16x16, 0.768 kimg: 0.128 kimg at 4x4, then per resolution (8, 16) a 0.128 kimg fade-in "
        "and 0.128 kimg stable, then 0.128 kimg more at 16x16."
    ) in log
    compiled = [m for m in log if m.startswith("Compiled the ")]
    assert [m.split()[2] for m in compiled] == ["4x4", "8x8", "16x16"]
    lines = [m for m in log if m.startswith(("progress ", "tick "))]
    assert {int(re.search(r" res +(\d+) ", m).group(1)) for m in lines} == {4, 8, 16}
    assert all("ETA" in m and "ETA ?" not in m for m in lines)
    # Each stage's real images are logged at the stage's first step.
    stages = run_length.images_per_resolution(plan_run(tiny_config(tiny_data_dir), jax.devices()).schedule)
    starts = np.cumsum([0] + [stage.images for stage in stages])[:-1]
    reals = [(step, tag) for step, tag in tensorboard_events(workdir) if tag.startswith("reals/")]
    assert reals == [(int(start), f"reals/{stage.resolution}") for start, stage in zip(starts, stages)]
    assert starts[1] > 0 and starts[2] > starts[1]


def test_stopped_and_resumed_run_equals_an_uninterrupted_run(tiny_data_dir, tmp_path):
    one_device = jax.devices()[:1]
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    loop.train_and_evaluate(tiny_config(tiny_data_dir), whole, devices=one_device)
    # Stop in the middle of the 8x8 fade-in (0.192 kimg: lod 1.5), then run the same command again.
    loop.train_and_evaluate(tiny_config(tiny_data_dir, total_kimg=0.192), parts, devices=one_device)
    stopped, _ = final_state(parts)
    loop.train_and_evaluate(tiny_config(tiny_data_dir), parts, devices=one_device)
    resumed, meta = final_state(parts)
    uninterrupted, _ = final_state(whole)
    assert meta["nimg"] == 768
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(uninterrupted)):
        np.testing.assert_array_equal(a, b)
    moved = [
        np.abs(a - b).max()
        for a, b in zip(jax.tree.leaves(stopped["generator"]), jax.tree.leaves(resumed["generator"]))
    ]
    assert max(moved) > 0  # the second run really trained


def test_a_time_limit_stops_the_run_with_a_checkpoint_and_a_higher_limit_resumes_it(tiny_data_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="absl")
    one_device, workdir = jax.devices()[:1], str(tmp_path / "limited")
    # A limit shorter than any round: the run stops after its first round (32 images of 4x4).
    loop.train_and_evaluate(tiny_config(tiny_data_dir, max_train_seconds=1e-6), workdir, devices=one_device)
    _, meta = final_state(workdir)
    assert meta["nimg"] == 32 and meta["elapsed_sec"] > 0
    stopped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Stopped by")]
    assert stopped == [
        f"Stopped by {loop.TIME_LIMIT} at 0.0 kimg; checkpoint 32 (0.0 kimg) is complete. "
        "Run the same command again to resume (with a higher limit)."
    ]
    # The same limit again: its time is spent, so nothing more is trained or saved.
    loop.train_and_evaluate(tiny_config(tiny_data_dir, max_train_seconds=1e-6), workdir, devices=one_device)
    assert checkpoint.CheckpointStore(workdir).latest_step() == 32
    loop.train_and_evaluate(tiny_config(tiny_data_dir), workdir, devices=one_device)
    assert final_state(workdir)[1]["nimg"] == 768


def test_a_different_model_in_an_existing_workdir_is_refused(tiny_data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    loop.train_and_evaluate(tiny_config(tiny_data_dir, total_kimg=0.064), workdir, devices=jax.devices()[:1])
    config = tiny_config(tiny_data_dir)
    config.model.fmap_max = 4
    with pytest.raises(loop.TrainingError, match="different config.model"):
        loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])


def test_a_start_refused_before_training_leaves_no_workdir(tiny_data_dir, tmp_path):
    # The recipe's built-in source (synthetic) does not fill a dataset named for the user's own images.
    config = tiny_config(tiny_data_dir)
    config.dataset.name = "icons"
    workdir = tmp_path / "new_run"
    with pytest.raises(UserError, match="no prepared dataset icons in .*: run pggan-prepare"):
        loop.train_and_evaluate(config, str(workdir), devices=jax.devices()[:1])
    assert not workdir.exists() and not os.path.exists(os.path.join(tiny_data_dir, "icons"))
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(UserError):
        loop.train_and_evaluate(config, str(existing), devices=jax.devices()[:1])
    assert (existing / "notes.txt").read_text() == "mine"  # a folder that was there is never removed


def test_out_of_memory_is_answered_in_one_line_naming_the_settings(tiny_data_dir, tmp_path, monkeypatch):
    def exhausted(*args, **kwargs):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes.")

    monkeypatch.setattr(loop.Trainer, "_run_round", exhausted)
    with pytest.raises(loop.TrainingError) as error:
        loop.train_and_evaluate(tiny_config(tiny_data_dir), str(tmp_path / "run"), devices=jax.devices()[:1])
    assert str(error.value) == (
        "the devices ran out of memory at 4x4, minibatch 16 (16 per device): run each device's minibatch in smaller "
        "pieces with --config.schedule.max_microbatch_per_device='{4: 4}' (same result, less memory), or lower the "
        "minibatch with --config.schedule.minibatch='{4: 8}'; then run the same command to resume"
    )
    assert not loop.is_out_of_memory(RuntimeError("INTERNAL: something else"))


def test_launcher_help_and_one_line_errors(tmp_path):
    env = subprocess_env()
    shown = subprocess.run(
        [sys.executable, "-m", "pggan.main", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    help_text = shown.stdout
    assert shown.returncode == 0, shown.stderr
    assert "--config" in help_text and "--workdir" in help_text and "--multihost" in help_text
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "pggan.main",
            f"--config={REPO}/configs/tiny.py",
            f"--workdir={tmp_path}/w",
            "--config.model.resolution=48",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "error: model.resolution must be a power of two" in bad.stderr
    assert "Traceback" not in bad.stderr
