"""Loss and penalty values on a fixed batch against an independent NumPy computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pggan import losses


def _linear_critic(weights, label_weights=None):
    """D(x) = <w, x> (+ label logits): its input gradient is w, so the penalty is known in closed form."""
    def critic(images):
        scores = jnp.einsum("nhwc,hwc->n", images, weights)[:, None]
        if label_weights is None:
            return scores
        return jnp.concatenate([scores, jnp.einsum("nhwc,hwck->nk", images, label_weights)], axis=1)
    return critic


def _quadratic_critic(images):
    """D(x) = sum(x^2) / 2: input gradient x, so the penalty at x_hat needs ||x_hat|| per sample."""
    return 0.5 * jnp.sum(jnp.square(images), axis=(1, 2, 3))[:, None]


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    reals = rng.uniform(-1, 1, (6, 4, 4, 3)).astype(np.float32)
    fakes = rng.uniform(-1, 1, (6, 4, 4, 3)).astype(np.float32)
    mix = rng.uniform(0, 1, (6,)).astype(np.float32)
    return reals, fakes, mix


def test_wgan_gp_matches_numpy(batch):
    reals, fakes, mix = batch
    cfg = losses.LossConfig()  # official: lambda 10, target 1, drift 0.001
    loss, aux = losses.discriminator_loss(cfg, _quadratic_critic, reals, fakes, mix, None)
    r = 0.5 * np.sum(reals.astype(np.float64) ** 2, axis=(1, 2, 3))
    f = 0.5 * np.sum(fakes.astype(np.float64) ** 2, axis=(1, 2, 3))
    x_hat = reals + (fakes - reals) * mix[:, None, None, None]
    norms = np.sqrt(np.sum(x_hat.astype(np.float64) ** 2, axis=(1, 2, 3)))
    expected = np.mean(f - r + 10.0 * (norms - 1.0) ** 2 + 0.001 * r ** 2)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(aux["grad_norm"]) == pytest.approx(norms.mean(), rel=1e-5)
    g_loss = losses.generator_loss(cfg, _quadratic_critic, fakes, None)
    assert float(g_loss) == pytest.approx(-f.mean(), rel=1e-5)


def test_gradient_penalty_target_scaling(batch):
    reals, fakes, mix = batch
    weights = np.random.default_rng(1).standard_normal((4, 4, 3)).astype(np.float32)
    cfg = losses.LossConfig(gp_target=2.0, drift=0.0, gp_lambda=3.0)
    loss, aux = losses.discriminator_loss(cfg, _linear_critic(jnp.asarray(weights)), reals, fakes, mix, None)
    w = weights.astype(np.float64)
    r, f = np.einsum("nhwc,hwc->n", reals, w), np.einsum("nhwc,hwc->n", fakes, w)
    norm = np.sqrt(np.sum(w ** 2))
    expected = np.mean(f - r) + 3.0 * (norm - 2.0) ** 2 / 4.0
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(aux["gradient_penalty"]) == pytest.approx((norm - 2.0) ** 2 / 4.0, rel=1e-5)


def test_lsgan_matches_numpy(batch):
    reals, fakes, mix = batch
    weights = np.random.default_rng(2).standard_normal((4, 4, 3)).astype(np.float32) * 0.1
    critic = _linear_critic(jnp.asarray(weights))
    cfg = losses.LossConfig(name="lsgan", gp_lambda=0.0, drift=0.0)
    loss, _ = losses.discriminator_loss(cfg, critic, reals, fakes, mix, None)
    r = np.einsum("nhwc,hwc->n", reals, weights.astype(np.float64))
    f = np.einsum("nhwc,hwc->n", fakes, weights.astype(np.float64))
    assert float(loss) == pytest.approx(np.mean(0.5 * (r - 1) ** 2 + 0.5 * f ** 2), rel=1e-5)
    assert float(losses.generator_loss(cfg, critic, fakes, None)) == pytest.approx(np.mean(0.5 * (f - 1) ** 2), rel=1e-5)


def test_acgan_label_terms(batch):
    reals, fakes, mix = batch
    rng = np.random.default_rng(3)
    weights = rng.standard_normal((4, 4, 3)).astype(np.float32)
    label_weights = rng.standard_normal((4, 4, 3, 5)).astype(np.float32) * 0.2
    critic = _linear_critic(jnp.asarray(weights), jnp.asarray(label_weights))
    labels = np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4, 0]]
    cfg = losses.LossConfig(gp_lambda=0.0, drift=0.0, cond_weight=0.5)

    def xent(images):
        logits = np.einsum("nhwc,hwck->nk", images.astype(np.float64), label_weights)
        logits -= logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return -(labels * log_probs).sum(axis=1)

    r = np.einsum("nhwc,hwc->n", reals, weights.astype(np.float64))
    f = np.einsum("nhwc,hwc->n", fakes, weights.astype(np.float64))
    loss, _ = losses.discriminator_loss(cfg, critic, reals, fakes, mix, jnp.asarray(labels))
    assert float(loss) == pytest.approx(np.mean(f - r + 0.5 * (xent(reals) + xent(fakes))), rel=1e-5)
    g_loss = losses.generator_loss(cfg, critic, fakes, jnp.asarray(labels))
    assert float(g_loss) == pytest.approx(np.mean(-f + 0.5 * xent(fakes)), rel=1e-5)


def test_penalty_is_differentiable_twice(batch):
    reals, fakes, mix = batch
    cfg = losses.LossConfig()

    def loss_of(w):
        return losses.discriminator_loss(cfg, _linear_critic(w), reals, fakes, mix, None)[0]

    w = jnp.asarray(np.random.default_rng(4).standard_normal((4, 4, 3)).astype(np.float32))
    grad = jax.grad(loss_of)(w)
    # d/dw of 10 * (||w|| - 1)^2 = 20 (||w|| - 1) w / ||w||, plus the linear terms' gradient.
    norm = jnp.linalg.norm(w)
    expected = (jnp.mean(fakes - reals, axis=0) + 20 * (norm - 1) * w / norm
                + 0.002 * jnp.einsum("n,nhwc->hwc", jnp.einsum("nhwc,hwc->n", reals, w), reals) / 6)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), rtol=1e-4, atol=1e-5)


def test_loss_config_validation():
    with pytest.raises(ValueError, match="loss.name"):
        losses.LossConfig(name="hinge-typo")
    with pytest.raises(ValueError, match="unknown loss config"):
        losses.LossConfig.from_config({"lambda": 1.0})
