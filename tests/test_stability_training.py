"""The stability options train for real: WGAN weight clipping with RMSProp (also microbatched), optimistic
Adam with extragradient steps (resuming exactly), differentiable augmentation (p = 0 trains as without it;
adaptive p is logged and resumes exactly; the few-images recipe trains on a folder), DAT, MMD GAN."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from pggan import checkpoint, parallel
from pggan.data import diff_augment
from pggan.data.diff_augment import AugmentConfig
from pggan.model import losses, networks, normalization
from pggan.training import loop, train_step, validation, writers
from pggan.training.config import ConfigError, OptimizerConfig, TrainingConfig
from pggan.training.step_updates import HostBatches, RoundScalars, summarize_metrics
from tests.run_support import REPO, load_recipe

pytestmark = pytest.mark.slow  # short training runs of every new mode

SPEC = networks.ModelSpec(resolution=8, latent_size=8, fmap_base=32, fmap_max=8)
MINIBATCH, REPEATS, ROUNDS = 16, 4, 3


def _train_rounds(step, rounds=ROUNDS, lr=2e-3):
    """`rounds` rounds at 4x4 on random images; returns (state, metric means, skipped counts)."""
    state, total = step.init_state(0), None
    for round_index in range(rounds):
        rng = np.random.default_rng(round_index)
        images = rng.integers(0, 256, (REPEATS, MINIBATCH, 4, 4, 3), dtype=np.uint8)
        order = parallel.device_major_order(MINIBATCH, step.mesh.size)
        sharding = parallel.batch_sharded(step.mesh, 1)
        data = HostBatches(
            jax.device_put(images[:, order], sharding),
            jax.device_put(np.zeros((REPEATS, MINIBATCH), np.int32), sharding),
        )
        scalars = RoundScalars(
            jnp.float32(1), jnp.float32(lr), jnp.float32(lr), jnp.float32(0.9), jax.random.key(round_index)
        )
        state, sums = step.round_fn(4, MINIBATCH)(state, data, scalars, round_index=round_index)
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    means, skipped = summarize_metrics(total)
    return state, means, skipped


def test_wgan_weight_clipping_with_rmsprop_and_microbatches_keeps_d_in_the_box():
    loss = losses.LossConfig(gp_lambda=0.0)  # WGAN: the clipping is the only constraint (drift kept)
    config = train_step.StepConfig(
        minibatch_repeats=REPEATS,
        optimizer=OptimizerConfig(name="rmsprop"),
        normalization=normalization.NormalizationConfig(method="clip", clip_value=0.01),
        max_microbatch_per_device=((4, 4),),
    )
    step = train_step.TrainStep.create(SPEC, loss, config, parallel.make_mesh(jax.devices()[:2]))
    assert config.microbatches(4, MINIBATCH // step.mesh.size, SPEC.mbstd_group_size) == 2
    state, means, skipped = _train_rounds(step, lr=5e-5 * 20)
    assert skipped == {"skipped_d": 0, "skipped_g": 0}
    assert all(np.isfinite(v) for v in means.values()), means
    d_leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(state["discriminator"])]
    assert max(np.abs(leaf).max() for leaf in d_leaves) <= 0.01
    assert sum((np.abs(leaf) == 0.01).sum() for leaf in d_leaves) > 0  # the bound was reached, not idle
    g_leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(state["generator"])]
    assert max(np.abs(leaf).max() for leaf in g_leaves) > 0.01  # G is not clipped
    assert isinstance(state["optimizers"]["d"], optax.ScaleByRmsState)  # RMSProp's state, not Adam's


def _optimistic_config(data_dir, **schedule):
    config = load_recipe("tiny")
    config.dataset.data_dir = data_dir
    config.model.resolution = 8
    config.schedule.update({"stabilize_kimg": 0.064, "transition_kimg": 0.064, "total_kimg": 0.192, **schedule})
    config.optimizer.update(name="optimistic_adam", optimism=0.5, extragradient=True)
    return config


def _final_state(config, workdir):
    plan = validation.plan_run(config, jax.devices()[:1])
    trainer = loop.Trainer(plan, workdir)
    store = checkpoint.CheckpointStore(workdir)
    state, _ = store.restore(store.latest_step(), trainer.step.abstract_state())
    store.close()
    trainer.store.close()
    return jax.tree.map(np.asarray, state)


def test_optimistic_adam_with_extragradient_trains_and_resumes_exactly(tmp_path):
    data_dir, devices = str(tmp_path / "data"), jax.devices()[:1]
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    loop.train_and_evaluate(_optimistic_config(data_dir), whole, devices=devices)
    loop.train_and_evaluate(_optimistic_config(data_dir, total_kimg=0.096), parts, devices=devices)  # mid-fade
    loop.train_and_evaluate(_optimistic_config(data_dir), parts, devices=devices)
    uninterrupted = _final_state(_optimistic_config(data_dir), whole)
    resumed = _final_state(_optimistic_config(data_dir), parts)
    assert "ScaleByOptimisticGradientState" in repr(jax.tree.structure(resumed["optimizers"]["g"]))
    for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed)):
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)
    # Another optimizer in this workdir is refused in one line (its state has another structure).
    config = _optimistic_config(data_dir, total_kimg=0.256)
    config.optimizer.name = "adam"
    with pytest.raises(loop.TrainingError, match=r"different config.optimizer.name \(optimistic_adam vs adam\)"):
        loop.train_and_evaluate(config, parts, devices=devices)


def _augment_step(augment, num_devices=2, **overrides):
    config = train_step.StepConfig(minibatch_repeats=REPEATS, augment=augment, **overrides)
    return train_step.TrainStep.create(
        SPEC, losses.LossConfig(), config, parallel.make_mesh(jax.devices()[:num_devices])
    )


def test_augmentation_with_p_zero_trains_as_without_and_p_one_trains_microbatched():
    _, plain, _ = _train_rounds(_augment_step(AugmentConfig()), rounds=1)
    state_off = _train_rounds(_augment_step(AugmentConfig()), rounds=1)[0]
    state_zero, zero, _ = _train_rounds(_augment_step(AugmentConfig(policy="diffaugment", probability=0.0)), rounds=1)
    assert zero.pop("augment_p") == 0.0 and set(zero) == set(plain)
    for a, b in zip(jax.tree.leaves(state_off), jax.tree.leaves(state_zero)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    augment = AugmentConfig(policy=",".join(diff_augment.OPS))  # every op, the resampled geometric ones too
    state, means, skipped = _train_rounds(_augment_step(augment, max_microbatch_per_device=((4, 4),)))
    assert skipped == {"skipped_d": 0, "skipped_g": 0} and means["augment_p"] == 1.0
    assert all(np.isfinite(v) for v in means.values()), means
    assert np.isfinite(means["gradient_penalty"])  # the penalty's interpolates were augmented too
    for leaf in jax.tree.leaves(state):
        assert np.isfinite(np.asarray(leaf)).all()


def _ada_config(data_dir, **schedule):
    config = load_recipe("tiny")
    config.dataset.data_dir = data_dir
    config.model.resolution = 8
    config.schedule.update({"stabilize_kimg": 0.064, "transition_kimg": 0.064, "total_kimg": 0.192, **schedule})
    config.loss.update(name="logistic", gp_lambda=0.0, drift=0.0, r1_gamma=1.0)  # ADA's loss
    # p moves by 2 * 16 / 160 = 0.2 every 2 D steps, up or down from 0.5: it visibly adapts within the run.
    config.augment.update(policy="ada", probability=0.5, target=0.6, speed_kimg=0.16, interval=2)
    return config


def test_adaptive_augmentation_logs_p_and_resumes_exactly(tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(
        writers.RunWriter, "scalars", lambda self, step, values, prefix="train": logged.append((prefix, dict(values)))
    )
    data_dir, devices = str(tmp_path / "data"), jax.devices()[:1]
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    loop.train_and_evaluate(_ada_config(data_dir), whole, devices=devices)
    train_logs = [values for prefix, values in logged if prefix == "train"]
    assert train_logs and all(
        0.0 <= values["augment_p"] <= 1.0 and -1 <= values["augment_rt"] <= 1 for values in train_logs
    )
    loop.train_and_evaluate(_ada_config(data_dir, total_kimg=0.096), parts, devices=devices)  # stops mid-fade
    loop.train_and_evaluate(_ada_config(data_dir), parts, devices=devices)
    uninterrupted = _final_state(_ada_config(data_dir), whole)
    resumed = _final_state(_ada_config(data_dir), parts)
    assert set(resumed) == set(checkpoint.STATE_ITEMS) | {diff_augment.STATE_ITEM}
    assert uninterrupted[diff_augment.STATE_ITEM]["p"] != 0.5  # it adapted
    for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    config = _ada_config(data_dir, total_kimg=0.256)
    config.augment.target = 0.0
    with pytest.raises(loop.TrainingError, match=r"different config.augment.target > 0 \(True vs False\)"):
        loop.train_and_evaluate(config, parts, devices=devices)


def test_the_few_images_recipe_trains_on_a_folder_of_a_hundred_images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    digits = np.load(f"{REPO}/pggan/data/digits.npz")
    images = digits["images"][:100]
    for n, image in enumerate(images):
        pixels = np.uint8(np.clip(image * 255.0 / images.max(), 0, 255))
        Image.fromarray(np.repeat(pixels[..., None], 3, axis=-1)).save(folder / f"{n:03d}.png")
    config = load_recipe("few_images")
    config.dataset.update(source=f"folder:{folder}", name="hundred", data_dir=str(tmp_path / "data"))
    config.model.update(resolution=8, latent_size=8, fmap_base=32, fmap_max=8)
    config.schedule.update(total_kimg=0.192, tick_kimg_base=0.064)
    config.augment.speed_kimg = 0.16
    config.metrics.update(names=("swd",), num_images=64)
    config.checkpoint.async_save = False
    workdir = str(tmp_path / "run")
    loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    state = _final_state(config, workdir)
    assert diff_augment.STATE_ITEM in state and 0.0 <= state[diff_augment.STATE_ITEM]["p"] <= 1.0
    for leaf in jax.tree.leaves(state):
        assert np.isfinite(leaf).all()


def test_dat_trains_with_pgd_perturbed_inputs_and_lazy_r1():
    loss = losses.LossConfig(
        name="logistic", gp_lambda=0.0, drift=0.0, r1_gamma=1.0, reg_interval=2, dat_epsilon=0.02, dat_steps=2
    )
    config = train_step.StepConfig(minibatch_repeats=REPEATS)
    step = train_step.TrainStep.create(SPEC, loss, config, parallel.make_mesh(jax.devices()[:2]))
    state, means, skipped = _train_rounds(step)
    assert skipped == {"skipped_d": 0, "skipped_g": 0}
    assert all(np.isfinite(v) for v in means.values()) and means["r1_penalty"] > 0, means
    for leaf in jax.tree.leaves(state):
        assert np.isfinite(np.asarray(leaf)).all()


@pytest.mark.parametrize("kernel, method", [("rq", "none"), ("rbf", "spectral")])
def test_mmd_gan_trains_on_d_features(kernel, method):
    loss = losses.LossConfig(name="mmd", mmd_kernel=kernel, drift=0.0, gp_lambda=1.0 if method == "none" else 0.0)
    config = train_step.StepConfig(
        minibatch_repeats=REPEATS, normalization=normalization.NormalizationConfig(method=method)
    )
    step = train_step.TrainStep.create(
        dataclasses.replace(SPEC, critic_size=8), loss, config, parallel.make_mesh(jax.devices()[:2])
    )
    state, means, skipped = _train_rounds(step)
    assert skipped == {"skipped_d": 0, "skipped_g": 0}
    assert all(np.isfinite(v) for v in means.values()), means
    assert means["d_loss"] != 0.0 and means["g_loss"] != 0.0
    assert np.asarray(state["discriminator"]["blocks"][0]["dense1"]["kernel"]).shape[-1] == 8
    for leaf in jax.tree.leaves(state):
        assert np.isfinite(np.asarray(leaf)).all()


def test_mmd_and_critic_size_go_together_in_one_line():
    for config, message in (
        ({"model": {"critic_size": 8}}, "config.model.critic_size=8 is the feature size of the MMD loss"),
        (
            {"loss": {"name": "mmd", "drift": 0.0}, "model": {"critic_size": 8, "label_size": 10}},
            "config.loss.name='mmd' trains unconditional models",
        ),
        ({"loss": {"name": "mmd", "drift": 0.0}, "d_normalization": {"method": "gran"}}, "without GraN"),
    ):
        with pytest.raises(ConfigError) as raised:
            TrainingConfig.parse(config)
        assert message in str(raised.value) and "\n" not in str(raised.value)
