"""In-process trainer faults: a changed device count between runs, and diverging (non-finite) training."""

import logging

import jax
import numpy as np
import pytest

from pggan import checkpoint, train
from pggan.errors import UserError
from tests.training_support import complete_steps, final_state, tiny_config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("datasets"))


def small_config(data_dir, total_kimg, **schedule):
    """The tiny recipe at 8x8 with a minibatch of 32: 4 samples per device on 8 devices, so the
    minibatch-stddev groups (4) are the same on 8, 2 and 1 devices and so is the computation."""
    config = tiny_config(data_dir, total_kimg=total_kimg, minibatch_base=32, tick_kimg_base=0.064, **schedule)
    config.model.resolution = 8
    config.checkpoint.every_ticks = 1
    config.samples.every_ticks = 1000
    return config


def test_checkpoints_restore_on_other_device_counts_and_training_continues(data_dir, tmp_path):
    chained, whole = str(tmp_path / "8-1-2"), str(tmp_path / "whole")
    # 8 devices until 64 images, 1 device until 128, then 2 devices until 192 (all in the 4x4 stage).
    for devices, total in ((8, 64), (1, 128), (2, 192)):
        train.train_and_evaluate(small_config(data_dir, total / 1000), chained, devices=jax.devices()[:devices])
        _, meta = final_state(chained)
        assert meta["nimg"] == total and meta["round"] == total // 64  # rounds of 2 x 32 images
    train.train_and_evaluate(small_config(data_dir, 0.192), whole, devices=jax.devices()[:1])
    state, _ = final_state(chained)
    reference, _ = final_state(whole)
    # The same computation up to the order of float sums in the all-device means.
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_diverging_training_skips_updates_then_stops_keeping_the_last_good_checkpoint(data_dir, tmp_path, caplog):
    workdir = str(tmp_path / "run")
    one_device = jax.devices()[:1]
    train.train_and_evaluate(small_config(data_dir, 0.064), workdir, devices=one_device)
    good, _ = final_state(workdir)
    # Resumed with absurd learning rates, the first Adam step blows the parameters up and every later
    # gradient is non-finite: those updates are skipped, counted, and after 3 in a row the run stops.
    diverging = small_config(data_dir, 0.192, g_lr_base=1e30, d_lr_base=1e30)
    diverging.max_consecutive_nonfinite = 3
    caplog.set_level(logging.INFO, logger="absl")  # a tool run earlier in this process may have raised it
    with pytest.raises(train.TrainingError) as error:
        train.train_and_evaluate(diverging, workdir, devices=one_device)
    message = str(error.value)
    assert isinstance(error.value, UserError) and "\n" not in message
    assert "consecutive training steps had non-finite gradients" in message
    assert "config.max_consecutive_nonfinite=3" in message
    ticks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tick")]
    skipped = [tuple(map(int, t.split("skipped ")[1].split()[0].split("/"))) for t in ticks]
    assert skipped and skipped[-1][0] > 0  # skipped D steps appear in the tick log ('skipped D/G')
    # No checkpoint of the diverged state was written: the good one is still the latest.
    assert any(r.getMessage().startswith("No checkpoint at") for r in caplog.records)
    assert complete_steps(workdir) == [64]
    kept, _ = final_state(workdir)
    for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(good)):
        np.testing.assert_array_equal(a, b)
    assert checkpoint.select_step(workdir) == 64
