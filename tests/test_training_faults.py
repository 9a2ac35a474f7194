"""In-process trainer faults: a changed device count between runs, and diverging (non-finite) training."""

import logging

import jax
import numpy as np
import pytest

from pggan import checkpoint
from pggan.errors import UserError
from pggan.training import loop
from tests.training_support import complete_steps, final_state, tiny_config

pytestmark = pytest.mark.slow  # training runs that diverge or change device counts


def small_config(tiny_data_dir, total_kimg, **schedule):
    """The tiny recipe at 8x8 with a minibatch of 32: 4 samples per device on 8 devices, so the
    minibatch-stddev groups (4) are the same on 8, 2 and 1 devices and so is the computation."""
    config = tiny_config(tiny_data_dir, total_kimg=total_kimg, minibatch_base=32, tick_kimg_base=0.064, **schedule)
    config.model.resolution = 8
    config.checkpoint.every_ticks = 1
    config.samples.every_ticks = 1000
    return config


def test_checkpoints_restore_on_other_device_counts_and_training_continues(tiny_data_dir, tmp_path):
    chained, whole = str(tmp_path / "8-1-2"), str(tmp_path / "whole")
    # 8 devices until 64 images, 1 device until 128, then 2 devices until 192 (all in the 4x4 stage).
    for devices, total in ((8, 64), (1, 128), (2, 192)):
        loop.train_and_evaluate(small_config(tiny_data_dir, total / 1000), chained, devices=jax.devices()[:devices])
        _, meta = final_state(chained)
        assert meta["nimg"] == total and meta["round"] == total // 64  # rounds of 2 x 32 images
    loop.train_and_evaluate(small_config(tiny_data_dir, 0.192), whole, devices=jax.devices()[:1])
    state, _ = final_state(chained)
    reference, _ = final_state(whole)
    # The same computation up to the order of float sums in the all-device means.
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _diverging(tiny_data_dir, limit: int, total_kimg: float = 0.192, **schedule):
    """Resumed with absurd learning rates, the first Adam step blows the parameters up and every later
    gradient is non-finite: those updates are skipped and counted."""
    config = small_config(tiny_data_dir, total_kimg, g_lr_base=1e30, d_lr_base=1e30, **schedule)
    config.max_consecutive_nonfinite = limit
    return config


@pytest.fixture
def good_run(tiny_data_dir, tmp_path):
    """A workdir with one good checkpoint at 64 images; returns (workdir, its state)."""
    workdir = str(tmp_path / "run")
    loop.train_and_evaluate(small_config(tiny_data_dir, 0.064), workdir, devices=jax.devices()[:1])
    return workdir, final_state(workdir)[0]


def _assert_only_the_good_checkpoint(workdir, good):
    assert complete_steps(workdir) == [64]
    kept, _ = final_state(workdir)
    for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(good)):
        np.testing.assert_array_equal(a, b)
    with checkpoint.CheckpointReader(workdir) as reader:
        assert reader.select() == 64


@pytest.mark.parametrize("limit, repeats", [(3, 2), (5, 4)])
def test_diverging_training_stops_at_exactly_the_limit_keeping_the_last_good_checkpoint(
    tiny_data_dir, good_run, limit, repeats, caplog
):
    """Rounds of `repeats` steps of 32 images from 64 images: the first step is finite, so the limit is
    reached in the second round, at its second step (3 = 1 + 2) or in its middle (5 = 3 + 2 of 4)."""
    workdir, good = good_run
    caplog.set_level(logging.INFO, logger="absl")  # a tool run earlier in this process may have raised it
    with pytest.raises(loop.TrainingError) as error:
        loop.train_and_evaluate(
            _diverging(tiny_data_dir, limit, 0.064 + 3 * repeats * 0.032, minibatch_repeats=repeats),
            workdir,
            devices=jax.devices()[:1],
        )
    message = str(error.value)
    assert isinstance(error.value, UserError) and "\n" not in message
    # Checked after every round, and a round changes nothing once the limit is reached: exactly the
    # limit even when it is reached in the middle of a round.
    assert message.startswith(
        f"{limit} consecutive training steps had non-finite gradients and were skipped "
        f"(limit config.max_consecutive_nonfinite={limit}); the last good checkpoint is 64 "
        f"(0.1 kimg) in {workdir}/checkpoints. Lower the learning rate"
    )
    ticks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tick")]
    skipped = [tuple(map(int, t.split("skipped ")[1].split()[0].split("/"))) for t in ticks]
    assert skipped and skipped[-1][0] > 0  # skipped D steps appear in the tick log ('skipped D/G')
    # No checkpoint of the diverged state was written: the good one is still the latest.
    assert any(r.getMessage().startswith("No checkpoint at") for r in caplog.records)
    _assert_only_the_good_checkpoint(workdir, good)


def test_a_run_that_diverged_at_its_end_fails_naming_the_last_good_checkpoint(tiny_data_dir, good_run, caplog):
    workdir, good = good_run
    caplog.set_level(logging.INFO, logger="absl")
    with pytest.raises(loop.TrainingError) as error:
        loop.train_and_evaluate(_diverging(tiny_data_dir, 0), workdir, devices=jax.devices()[:1])  # no limit
    assert str(error.value) == (
        "training reached 0.192 kimg with its last 3 steps skipped for non-finite gradients, so its final state was "
        f"not checkpointed; the last good checkpoint is 64 (0.1 kimg) in {workdir}/checkpoints. Lower the learning "
        "rate or check the data, then run the same command to resume from it"
    )
    assert not any(r.getMessage().startswith("Training complete") for r in caplog.records)
    _assert_only_the_good_checkpoint(workdir, good)
