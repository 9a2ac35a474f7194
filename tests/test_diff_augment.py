"""Differentiable augmentation: p = 0 is the identity, each op matches its definition computed in NumPy,
the parameters drawn at p = 1 have the stated distributions, and adaptive p moves as ADA's rule says."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pggan.data import diff_augment
from pggan.data.diff_augment import AugmentConfig

SIZE = 8


def _draws(count, p, size=SIZE, seed=0):
    keys = jax.random.split(jax.random.key(seed), count)
    return jax.vmap(lambda k: diff_augment.draw(k, jnp.float32(p), size))(keys)


def _images(count, seed=1, size=SIZE):
    return np.random.default_rng(seed).uniform(-1, 1, (count, size, size, 3)).astype(np.float32)


def _numpy_augment(x, params, ops):
    """The definitions of the module docstring, one image at a time, in float64."""
    gates = dict(zip(diff_augment.GATES, np.asarray(params["gates"])))
    x = x.astype(np.float64)
    size = x.shape[0]
    if "xflip" in ops and gates["xflip"] and params["flip"]:
        x = x[:, ::-1]
    if "rotate90" in ops and gates["rotate90"]:
        x = np.rot90(x, int(params["rotation"]), axes=(0, 1))
    if "color" in ops:
        if gates["brightness"]:
            x = x + float(params["brightness"])
        if gates["saturation"]:
            m = x.mean(axis=-1, keepdims=True)
            x = (x - m) * float(params["saturation"]) + m
        if gates["contrast"]:
            x = (x - x.mean()) * float(params["contrast"]) + x.mean()
    if "translation" in ops and gates["translation"]:
        dy, dx = (int(v) for v in params["shift"])
        out = np.zeros_like(x)
        for i in range(size):
            for j in range(size):
                if 0 <= i - dy < size and 0 <= j - dx < size:
                    out[i, j] = x[i - dy, j - dx]
        x = out
    if "cutout" in ops and gates["cutout"]:
        top, left = (int(v) for v in params["cutout"])
        side = diff_augment.cutout_size(size)
        x = x.copy()
        x[max(top, 0) : max(top + side, 0), max(left, 0) : max(left + side, 0)] = 0.0
    return x


@pytest.mark.parametrize("ops", [diff_augment.OPS, ("color",), ("translation",), ("cutout",), ("xflip", "rotate90")])
def test_p_zero_is_the_identity_and_p_one_matches_the_definitions(ops):
    images = _images(16)
    unchanged = diff_augment.augment(jnp.asarray(images), _draws(16, 0.0), ops)
    np.testing.assert_array_equal(np.asarray(unchanged), images)
    params = _draws(16, 1.0)
    augmented = np.asarray(diff_augment.augment(jnp.asarray(images), params, ops))
    for n in range(16):
        one = jax.tree.map(lambda v, n=n: np.asarray(v)[n], params)
        np.testing.assert_allclose(augmented[n], _numpy_augment(images[n], one, ops), atol=1e-5)
    assert np.abs(augmented - images).max() > 0.1


def test_parameters_at_p_one_have_their_distributions():
    count = 20000
    params = jax.tree.map(np.asarray, _draws(count, 1.0))
    assert params["gates"].all()
    for name, low, high in (("brightness", -0.5, 0.5), ("saturation", 0.0, 2.0), ("contrast", 0.5, 1.5)):
        values = params[name]
        assert low <= values.min() and values.max() < high
        assert values.mean() == pytest.approx((low + high) / 2, abs=0.02)
        assert values.var() == pytest.approx((high - low) ** 2 / 12, rel=0.05)
    t = diff_augment.translation_range(SIZE)  # 1 at 8x8
    for values, support in (
        (params["shift"].ravel(), range(-t, t + 1)),
        (params["rotation"], range(4)),
        (params["flip"].astype(int), range(2)),
    ):
        frequencies = np.bincount(values - min(support), minlength=len(support)) / values.size
        np.testing.assert_allclose(frequencies, 1 / len(support), atol=0.015)
    side = diff_augment.cutout_size(SIZE)  # centre uniform over 0..SIZE (even side), square from centre - side/2
    starts = params["cutout"].ravel() + side // 2
    np.testing.assert_allclose(np.bincount(starts) / starts.size, 1 / (SIZE + 1), atol=0.015)
    gates = np.asarray(_draws(count, 0.3)["gates"])
    np.testing.assert_allclose(gates.mean(axis=0), 0.3, atol=0.015)


def test_augmented_image_statistics_match_the_definitions():
    """On a constant image: brightness moves each image's mean by U(-0.5, 0.5); cutout zeroes the expected area."""
    count = 4000
    params = _draws(count, 1.0, seed=3)
    ones = jnp.ones((count, SIZE, SIZE, 3))
    shift = np.asarray(diff_augment.augment(ones * 0.0, params, ("color",))).mean(axis=(1, 2, 3))
    # brightness b, then saturation and contrast keep a constant image constant
    np.testing.assert_allclose(shift, np.asarray(params["brightness"]), atol=1e-6)
    cut = 1.0 - np.asarray(diff_augment.augment(ones, params, ("cutout",))).mean(axis=(1, 2, 3))
    side = diff_augment.cutout_size(SIZE)
    covered = [len(range(max(s - side // 2, 0), min(s - side // 2 + side, SIZE))) for s in range(SIZE + 1)]
    assert cut.mean() == pytest.approx(np.mean(covered) ** 2 / SIZE**2, rel=0.05)


def test_gradients_pass_through_every_op():
    images = jnp.asarray(_images(4))
    params = _draws(4, 1.0)
    grads = jax.grad(lambda x: jnp.sum(diff_augment.augment(x, params, diff_augment.OPS) ** 2))(images)
    assert np.isfinite(np.asarray(grads)).all() and np.abs(np.asarray(grads)).max() > 0
    # translation alone: the gradient of sum(out) is 1 where a pixel stays inside the image
    grads = np.asarray(jax.grad(lambda x: jnp.sum(diff_augment.augment(x, params, ("translation",))))(images))
    for n in range(4):
        dy, dx = (int(v) for v in params["shift"][n])
        expected = np.zeros((SIZE, SIZE, 3))
        expected[max(-dy, 0) : SIZE - max(dy, 0), max(-dx, 0) : SIZE - max(dx, 0)] = 1.0
        np.testing.assert_array_equal(grads[n], expected)


def test_adaptive_p_follows_the_sign_of_r_minus_target():
    config = AugmentConfig(policy="ada", probability=0.0, target=0.6, speed_kimg=0.32, interval=2)
    state, history = config.initial_state(), []
    # step size interval * minibatch / (1000 * speed_kimg) = 2 * 16 / 320 = 0.1
    for real_sign in (1.0, 0.5, 1.0, 1.0, 0.0, 0.2, -1.0, 0.0, -1.0, -1.0):
        state = config.update_state(state, jnp.float32(real_sign), minibatch=16)
        history.append(float(state["p"]))
    # r over pairs: 0.75 (up), 1.0 (up), 0.1 (down), -0.5 (down), -1 (down, clipped at 0)
    np.testing.assert_allclose(history, [0, 0.1, 0.1, 0.2, 0.2, 0.1, 0.1, 0.0, 0.0, 0.0], atol=1e-6)
    assert int(state["steps"]) == 0 and float(state["sign_sum"]) == 0.0


def test_config_names_ops_and_checks_in_one_line():
    assert AugmentConfig(policy="diffaugment").ops == ("color", "translation", "cutout")
    assert AugmentConfig(policy="cutout, xflip").policy == "xflip,cutout"
    assert AugmentConfig().ops == () and not AugmentConfig(policy="ada").adaptive
    for fields, message in (
        ({"policy": "blur"}, "config.augment.policy must be"),
        ({"policy": "color,color"}, "config.augment.policy must be"),
        ({"probability": 1.5}, "config.augment.probability must be in [0, 1]"),
        ({"target": 0.6}, "config.augment.target > 0 needs a config.augment.policy"),
        ({"policy": "ada", "interval": 0}, "config.augment.interval must be an integer >= 1"),
    ):
        with pytest.raises(ValueError) as raised:
            AugmentConfig(**fields)
        assert message in str(raised.value) and "\n" not in str(raised.value)
