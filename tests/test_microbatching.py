"""Gradient accumulation over microbatches: group-preserving splits, config checks, and accumulated
steps equal to the full batch."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pggan.model import layers, losses, networks, normalization
from pggan.training import microbatching, train_step
from pggan.training.config import ConfigError
from pggan.training.validation import plan_run
from tests.run_support import load_recipe
from tests.training_support import one_round

SPEC = networks.ModelSpec(resolution=8, latent_size=8, fmap_base=32, fmap_max=16)


def test_microbatch_count_keeps_whole_stddev_groups():
    assert microbatching.microbatch_count(16, None, 4) == 1
    assert microbatching.microbatch_count(16, 16, 4) == 1
    assert microbatching.microbatch_count(16, 8, 4) == 2
    assert microbatching.microbatch_count(16, 5, 4) == 4  # 4 groups of 4: microbatches of 4
    assert microbatching.microbatch_count(24, 10, 4) == 3  # 6 groups: 3 microbatches of 8
    assert microbatching.microbatch_count(6, 1, 1) == 6  # no stddev layer: single images
    with pytest.raises(ValueError, match=r"possible microbatch sizes: \[4, 8, 16\]"):
        microbatching.microbatch_count(16, 3, 4)


@pytest.mark.accelerator
def test_split_microbatches_reproduce_the_minibatch_stddev_of_the_whole_batch():
    x = jax.random.normal(jax.random.key(0), (24, 2, 2, 3))
    whole = layers.minibatch_stddev(x, 4)[..., -1]  # [24, 2, 2]: the statistic each row sees
    parts = microbatching.split(x, 3, 4)
    rows = microbatching.split(jnp.arange(24), 3, 4)
    for part, ids in zip(parts, rows):
        np.testing.assert_allclose(layers.minibatch_stddev(part, 4)[..., -1], whole[np.asarray(ids)], rtol=1e-6)
    assert sorted(np.asarray(rows).ravel().tolist()) == list(range(24))


def test_impossible_microbatch_setting_is_a_config_error():
    config = load_recipe("tiny")
    config.schedule.max_microbatch_per_device = {16: 3}
    with pytest.raises(ConfigError, match=r"max_microbatch_per_device\[16\].*possible microbatch sizes"):
        plan_run(config, jax.devices()[:1])


# The paper's WGAN-GP; and a logistic loss with lazy R1 (round 0's D step is followed by a penalty-only
# step) and a spectrally normalized D, whose power-iteration vectors are updated once per D step.
ACCUMULATED_SETTINGS = {
    "wgan_gp": (losses.LossConfig(), normalization.NormalizationConfig()),
    "logistic_r1lazy_spectral": (
        losses.LossConfig(name="logistic", gp_lambda=0.0, drift=0.0, r1_gamma=1.0, reg_interval=4),
        normalization.NormalizationConfig(method="spectral"),
    ),
}


@pytest.mark.slow
@pytest.mark.accelerator
@pytest.mark.parametrize("settings", ACCUMULATED_SETTINGS)
def test_gradient_accumulation_equals_the_full_batch(settings):
    loss, norm = ACCUMULATED_SETTINGS[settings]
    config = train_step.StepConfig(minibatch_repeats=1, mirror_augment=True, normalization=norm)
    _, full_state, full_sums = one_round(SPEC, config, loss=loss)
    accumulated = dataclasses.replace(config, max_microbatch_per_device=((8, 4),))  # 16 images -> 4 x 4
    _, micro_state, micro_sums = one_round(SPEC, accumulated, loss=loss)
    assert full_sums["penalty_steps"] == 1
    for name, value in full_sums.items():
        assert micro_sums[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    for a, b in zip(jax.tree.leaves(full_state), jax.tree.leaves(micro_state)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
