"""The compiled training round: device-count invariance, EMA order, non-finite skips, Adam resets, bfloat16."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pggan import parallel
from pggan.model import losses, networks
from pggan.training import train_step
from pggan.training.step_updates import HostBatches, RoundScalars
from tests.training_support import one_round

SPEC = networks.ModelSpec(resolution=16, latent_size=16, fmap_base=64, fmap_max=16)
RESOLUTION = 8


def _make(num_devices, **step_overrides):
    mesh = parallel.make_mesh(jax.devices()[:num_devices])
    config = train_step.StepConfig(**{"minibatch_repeats": 2, **step_overrides})
    return train_step.TrainStep.create(SPEC, losses.LossConfig(), config, mesh)


def _batch(step, batch_size, seed=0) -> HostBatches:
    rng = np.random.default_rng(seed)
    s = step.config.minibatch_repeats * step.config.d_repeats
    images = rng.integers(0, 256, (s, batch_size, RESOLUTION, RESOLUTION, 3), dtype=np.uint8)
    labels = np.zeros((s, batch_size), np.int32)
    order = parallel.device_major_order(batch_size, step.mesh.size)
    sharding = parallel.batch_sharded(step.mesh, 1)
    return HostBatches(jax.device_put(images[:, order], sharding), jax.device_put(labels[:, order], sharding))


def _run(step, state, batch_size, alpha=0.5, lr=1e-3, key=1, ema_beta=0.999):
    fn = step.round_fn(RESOLUTION, batch_size)
    scalars = RoundScalars(
        jnp.float32(alpha), jnp.float32(lr), jnp.float32(lr), jnp.float32(ema_beta), jax.random.key(key)
    )
    return fn(state, _batch(step, batch_size), scalars)


def _host(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


@pytest.mark.slow
def test_eight_devices_equal_one_device_when_stddev_groups_coincide():
    # 32 samples: one device forms the strided groups {n, n+8, n+16, n+24}; with 8 devices each device
    # holds exactly one such group in the strided layout, so both compute the same function.
    results = {}
    for num_devices in (1, 8):
        step = _make(num_devices, mirror_augment=True)
        state, sums = _run(step, step.init_state(0), 32)
        results[num_devices] = (_host(state), {k: float(v) for k, v in sums.items()})
    (state1, sums1), (state8, sums8) = results[1], results[8]
    for name in ("generator", "discriminator", "generator_ema"):
        for a, b in zip(jax.tree.leaves(state1[name]), jax.tree.leaves(state8[name])):
            np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
    for name, value in sums1.items():
        assert sums8[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


@pytest.mark.slow
@pytest.mark.accelerator
def test_ema_is_updated_after_each_d_step_before_the_g_step():
    beta = 0.9
    one = _make(1, minibatch_repeats=1)
    two = _make(1, minibatch_repeats=2)
    g0 = _host(one.init_state(0)["generator"])
    after_one, _ = _run(one, one.init_state(0), 8, ema_beta=beta)
    g1 = _host(after_one["generator"])
    after_two, _ = _run(two, two.init_state(0), 8, ema_beta=beta)
    # Repeat 1: ema = g0 (EMA of g0 with itself); repeat 2: ema = g1 + (g0 - g1) * beta.
    expected = jax.tree.map(lambda a, b: b + (a - b) * beta, g0, g1)
    for e, got in zip(jax.tree.leaves(expected), jax.tree.leaves(_host(after_two["generator_ema"]))):
        np.testing.assert_allclose(got, e, atol=1e-6)


@pytest.mark.accelerator
def test_nonfinite_gradients_skip_updates_and_are_counted():
    step = _make(1)
    state = step.init_state(0)
    before = _host(state)
    poisoned = jax.tree.map(lambda x: x, state)
    kernel = poisoned["discriminator"]["blocks"][0]["dense1"]["kernel"]
    poisoned["discriminator"]["blocks"][0]["dense1"]["kernel"] = kernel.at[0, 0].set(jnp.nan)
    after, sums = _run(step, poisoned, 8)
    after = _host(after)
    assert int(sums["skipped_d"]) == 2 and int(sums["skipped_g"]) == 2
    assert int(after["counters"]["consecutive_nonfinite"]) == 2
    for a, b in zip(jax.tree.leaves(before["generator"]), jax.tree.leaves(after["generator"])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(before["optimizers"]), jax.tree.leaves(after["optimizers"])):
        np.testing.assert_array_equal(a, b)
    # A healthy round resets the consecutive count but keeps the totals.
    healthy, _ = _run(step, step.init_state(0), 8)
    assert int(healthy["counters"]["consecutive_nonfinite"]) == 0


@pytest.mark.accelerator
def test_adam_reset_zeroes_moments_and_count():
    step = _make(1)
    state, _ = _run(step, step.init_state(0), 8)
    assert any(np.abs(x).max() > 0 for x in jax.tree.leaves(_host(state["optimizers"])))
    reset = step.reset_optimizers(state)
    assert all(not np.asarray(x).any() for x in jax.tree.leaves(reset["optimizers"]))


def test_training_moves_parameters_and_keeps_them_replicated():
    step = _make(8)
    state = step.init_state(0)
    before = _host(state["generator"])
    state, sums = _run(step, state, 32)
    leaf = jax.tree.leaves(state["generator"])[0]
    assert leaf.sharding.is_fully_replicated
    moved = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(_host(state["generator"])))]
    assert max(moved) > 1e-4
    assert np.isfinite([float(v) for v in sums.values()]).all()


SMALL_SPEC = networks.ModelSpec(resolution=8, latent_size=8, fmap_base=32, fmap_max=16)


@pytest.mark.slow
@pytest.mark.accelerator
def test_bfloat16_step_agrees_with_float32_to_bfloat16_tolerance():
    config = train_step.StepConfig(minibatch_repeats=1)
    before, f32_state, f32_sums = one_round(SMALL_SPEC, config)
    _, bf16_state, bf16_sums = one_round(dataclasses.replace(SMALL_SPEC, compute_dtype="bfloat16"), config)
    # Without the step's exact-bfloat16 compile option, d_loss was 8.73 vs 6.98 here (the gradient
    # penalty's input gradients 2.5x too small). Master weights and both Adam states stay float32.
    assert {x.dtype for x in jax.tree.leaves(bf16_state) if x.dtype.kind == "f"} == {np.dtype(np.float32)}
    for name in ("d_loss", "g_loss", "real_score", "fake_score", "gradient_penalty", "grad_norm"):
        assert bf16_sums[name] == pytest.approx(f32_sums[name], rel=0.05, abs=0.02), name

    # Adam's first step moves every weight by lr * g / |g|: the two steps move the weights alike
    # except where bfloat16 rounding flips the sign of a tiny gradient.
    def flat(state, network):
        return np.concatenate([np.ravel(x) for x in jax.tree.leaves(state[network])])

    for network in ("generator", "discriminator"):
        f32_update = flat(f32_state, network) - flat(before, network)
        bf16_update = flat(bf16_state, network) - flat(before, network)
        agree = np.mean(np.abs(bf16_update - f32_update) < 1e-4)
        assert agree > 0.9, network


@pytest.mark.parametrize("cpu_ynnpack", [False, True])
def test_cpu_steps_hand_convolutions_to_ynnpack_only_when_asked(cpu_ynnpack):
    step = _make(1, cpu_ynnpack=cpu_ynnpack)
    state = step.init_state(0)
    scalars = RoundScalars(*(jnp.float32(v) for v in (0.5, 1e-3, 1e-3, 0.999)), jax.random.key(1))
    compiled = step.call_fn(RESOLUTION, 8, HostBatches).lower(state, _batch(step, 8), scalars, jnp.int32(0)).compile()
    hlo = compiled.as_text()
    # XLA's default hands them to YNNPACK fusions; config.cpu_ynnpack=false (the default) keeps XLA's own.
    assert ("ynn_fusion" in hlo) == cpu_ynnpack
    assert "convolution(" in hlo
