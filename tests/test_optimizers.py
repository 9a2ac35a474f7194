"""The optimizers (RMSProp, optimistic Adam), the extragradient step and D's weight clipping, against two
steps computed by hand from their definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pggan.model import losses, networks, normalization
from pggan.training import optimizers, step_updates
from pggan.training.config import ConfigError, OptimizerConfig, TrainingConfig

SPEC = networks.ModelSpec(resolution=8, latent_size=8, fmap_base=32, fmap_max=8)


def _two_steps(optimizer, gradients, p0=1.0, lr=0.1):
    """Parameter values after each of two steps p - lr * u from p0, gradients[i] at step i."""
    params, state, values = jnp.float32(p0), optimizer.init(jnp.float32(p0)), []
    for g in gradients:
        params, state = step_updates._step(optimizer, params, state, jnp.float32(g), lr)
        values.append(float(params))
    return values


def test_rmsprop_two_steps_by_hand():
    # nu_1 = 0.1 * 2^2 = 0.4; p_1 = 1 - 0.1 * 2 / sqrt(0.4)
    # nu_2 = 0.9 * 0.4 + 0.1 * 1 = 0.46; p_2 = p_1 + 0.1 * 1 / sqrt(0.46)
    p1 = 1 - 0.2 / np.sqrt(0.4)
    p2 = p1 + 0.1 / np.sqrt(0.46)
    values = _two_steps(optimizers.direction("rmsprop", 0.0, 0.9, 1e-12, 1.0), [2.0, -1.0])
    np.testing.assert_allclose(values, [p1, p2], rtol=1e-6)


def test_optimistic_adam_two_steps_by_hand():
    # b1 = 0.5, b2 = 0.9. Step 1, g = 2: m = 1, v = 0.4, m_hat = 2, v_hat = 4, r_1 = 1; u_1 = r_1 (r_0 := r_1).
    # Step 2, g = -1: m = 0.5 - 0.5 = 0, r_2 = 0; u_2 = (1 + o) * 0 - o * r_1 = -o.
    for optimism in (1.0, 0.5):
        optimizer = optimizers.direction("optimistic_adam", 0.5, 0.9, 1e-12, optimism)
        np.testing.assert_allclose(_two_steps(optimizer, [2.0, -1.0]), [0.9, 0.9 + 0.1 * optimism], rtol=1e-6)
    # Plain Adam takes u_2 = r_2 = 0: it stays at 0.9.
    np.testing.assert_allclose(
        _two_steps(optimizers.direction("adam", 0.5, 0.9, 1e-12, 1.0), [2.0, -1.0]), [0.9, 0.9], rtol=1e-6
    )


def test_extragradient_two_steps_by_hand():
    """Loss p^2 / 2 (gradient p), RMSProp with decay 0.5, lr 0.5: the gradient of the lookahead point steps."""
    config = step_updates.StepConfig(
        optimizer=OptimizerConfig(name="rmsprop", d_beta2=0.5, eps=1e-12, extragradient=True)
    )
    updates = step_updates.TrainingUpdates(SPEC, losses.LossConfig(), config)
    lr, decay = 0.5, 0.5

    def numpy_steps(p, nu, count):
        values = []
        for _ in range(count):
            nu_ahead = decay * nu + (1 - decay) * p**2  # the lookahead does not keep its nu
            ahead = p - lr * p / np.sqrt(nu_ahead)
            nu = decay * nu + (1 - decay) * ahead**2
            p = p - lr * ahead / np.sqrt(nu)
            values.append(p)
        return values

    params, state, values, seen = jnp.float32(1.0), updates.d_optimizer.init(jnp.float32(1.0)), [], []

    def gradients(p):
        seen.append(p)
        return p**2 / 2, p

    for _ in range(2):
        value, params, state, skipped = updates._optimizer_step(updates.d_optimizer, params, state, gradients, lr)
        assert not bool(skipped)
        values.append(float(params))
    np.testing.assert_allclose(values, numpy_steps(1.0, 0.0, 2), rtol=1e-5)
    assert float(value) == pytest.approx(values[0] ** 2 / 2, rel=1e-6)  # the value is at the step's start
    assert len(seen) == 4  # two gradients per step


def test_weight_clipping_bounds_every_parameter():
    d = networks.build_networks(SPEC, 0)[1]
    params = networks.parameters(d)
    clipped = normalization.clip_parameters(params, 0.01)
    assert jax.tree.structure(clipped) == jax.tree.structure(params)
    for before, after in zip(jax.tree.leaves(params), jax.tree.leaves(clipped)):
        before, after = np.asarray(before), np.asarray(after)
        assert after.dtype == before.dtype and np.abs(after).max() <= 0.01
        np.testing.assert_array_equal(after, np.clip(before, -0.01, 0.01))


def test_config_checks_are_one_line():
    for section, values, message in (
        ("optimizer", {"name": "sgd"}, "config.optimizer.name must be one of ('adam', 'rmsprop', 'optimistic_adam')"),
        ("optimizer", {"optimism": -1.0}, "config.optimizer.optimism must be >= 0"),
        ("optimizer", {"extragradient": 1}, "config.optimizer.extragradient must be true or false"),
        ("d_normalization", {"method": "clip", "clip_value": 0.0}, "d_normalization.clip_value must be a positive"),
        (
            "d_normalization",
            {"method": "clip+spectral"},
            "d_normalization.method must be one of ('none', 'spectral', 'gran', 'clip')",
        ),
    ):
        with pytest.raises(ConfigError) as raised:
            TrainingConfig.parse({section: values})
        assert message in str(raised.value) and "\n" not in str(raised.value)
