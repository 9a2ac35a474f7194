"""Loss and penalty values on a fixed batch against an independent NumPy computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pggan.model import losses


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
    expected = np.mean(f - r + 10.0 * (norms - 1.0) ** 2 + 0.001 * r**2)
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
    norm = np.sqrt(np.sum(w**2))
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
    assert float(loss) == pytest.approx(np.mean(0.5 * (r - 1) ** 2 + 0.5 * f**2), rel=1e-5)
    assert float(losses.generator_loss(cfg, critic, fakes, None)) == pytest.approx(
        np.mean(0.5 * (f - 1) ** 2), rel=1e-5
    )


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
    expected = (
        jnp.mean(fakes - reals, axis=0)
        + 20 * (norm - 1) * w / norm
        + 0.002 * jnp.einsum("n,nhwc->hwc", jnp.einsum("nhwc,hwc->n", reals, w), reals) / 6
    )
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), rtol=1e-4, atol=1e-5)


def test_loss_config_validation():
    with pytest.raises(ValueError, match="loss.name"):
        losses.LossConfig(name="hinge-typo")
    with pytest.raises(ValueError, match="unknown loss config"):
        losses.LossConfig.from_config({"lambda": 1.0})


def _logit_critic(images):
    """D output = the first pixel's first channel: images carry the logits the test wants."""
    return images[:, 0, 0, :1]


def _images_with_logits(logits):
    images = np.zeros((len(logits), 4, 4, 3), np.float32)
    images[:, 0, 0, 0] = logits
    return jnp.asarray(images)


@pytest.mark.parametrize("name", ["wgan", "logistic", "lsgan", "hinge"])
def test_adversarial_losses_on_fixed_logits(name):
    r = np.array([-3.0, -0.5, 0.0, 0.7, 2.0, 9.0], np.float64)
    f = np.array([4.0, -1.5, 0.3, -0.2, 1.0, -8.0], np.float64)
    expected_d, expected_g = {
        "wgan": (f - r, -f),
        "logistic": (np.logaddexp(0, f) + np.logaddexp(0, -r), np.logaddexp(0, -f)),
        "lsgan": (((r - 1) ** 2 + f**2) / 2, (f - 1) ** 2 / 2),
        "hinge": (np.maximum(0, 1 - r) + np.maximum(0, 1 + f), -f),
    }[name]
    cfg = losses.LossConfig(name=name, gp_lambda=0.0, drift=0.0)
    reals, fakes = _images_with_logits(r), _images_with_logits(f)
    d_loss, aux = losses.discriminator_loss(cfg, _logit_critic, reals, fakes, jnp.zeros(6), None)
    assert float(d_loss) == pytest.approx(expected_d.mean(), rel=1e-6)
    assert set(aux) == {"real_score", "fake_score"}
    assert float(losses.generator_loss(cfg, _logit_critic, fakes, None)) == pytest.approx(expected_g.mean(), rel=1e-6)


def test_loss_aliases_and_lazy_settings():
    assert losses.LossConfig(name="least_squares").name == "lsgan"
    assert losses.LossConfig(name="non_saturating").name == "logistic"
    lazy = losses.LossConfig(r1_gamma=1.0, reg_interval=4)
    assert lazy.lazy and lazy.adam_correction == pytest.approx(0.8)
    assert losses.LossConfig().adam_correction == 1.0
    with pytest.raises(ValueError, match="needs a gradient penalty"):
        losses.LossConfig(gp_lambda=0.0, reg_interval=4)
    with pytest.raises(ValueError, match="loss.r1_gamma=-1.0"):
        losses.LossConfig(r1_gamma=-1.0)


def _tanh_critic(weights, scales):
    """D(x) = sum_k a_k tanh(<w_k, x>): a smooth critic whose input gradient NumPy computes exactly."""

    def critic(images):
        return jnp.sum(scales * jnp.tanh(jnp.einsum("nhwc,khwc->nk", images, weights)), axis=1)[:, None]

    return critic


def _tanh_critic_numpy(images, weights, scales):
    """(D(x) [N], ||grad_x D(x)||^2 [N]) in float64."""
    pre = np.einsum("nhwc,khwc->nk", images.astype(np.float64), weights.astype(np.float64))
    grads = np.einsum("nk,khwc->nhwc", scales * (1 - np.tanh(pre) ** 2), weights.astype(np.float64))
    return (scales * np.tanh(pre)).sum(axis=1), (grads**2).sum(axis=(1, 2, 3))


def test_r1_and_r2_are_squared_input_gradient_norms(batch):
    reals, fakes, mix = batch
    rng = np.random.default_rng(5)
    weights, scales = rng.standard_normal((3, 4, 4, 3)).astype(np.float32), np.array([0.5, -1.0, 2.0])
    critic = _tanh_critic(jnp.asarray(weights), jnp.asarray(scales, jnp.float32))
    r, r_sq = _tanh_critic_numpy(reals, weights, scales)
    f, f_sq = _tanh_critic_numpy(fakes, weights, scales)
    cfg = losses.LossConfig(gp_lambda=0.0, drift=0.0, r1_gamma=3.0, r2_gamma=0.5)
    loss, aux = losses.discriminator_loss(cfg, critic, reals, fakes, mix, None)
    assert float(aux["r1_penalty"]) == pytest.approx(r_sq.mean(), rel=1e-5)
    assert float(aux["r2_penalty"]) == pytest.approx(f_sq.mean(), rel=1e-5)
    assert float(loss) == pytest.approx(np.mean(f - r + 1.5 * r_sq + 0.25 * f_sq), rel=1e-5)


def test_zero_centred_penalty_on_interpolates(batch):
    reals, fakes, mix = batch
    cfg = losses.LossConfig(gp_lambda=0.0, gp0_lambda=4.0, drift=0.0)
    loss, aux = losses.discriminator_loss(cfg, _quadratic_critic, reals, fakes, mix, None)
    x_hat = (reals + (fakes - reals) * mix[:, None, None, None]).astype(np.float64)
    squared = np.sum(x_hat**2, axis=(1, 2, 3))  # D = |x|^2 / 2 has gradient x
    r = 0.5 * np.sum(reals.astype(np.float64) ** 2, axis=(1, 2, 3))
    f = 0.5 * np.sum(fakes.astype(np.float64) ** 2, axis=(1, 2, 3))
    assert float(loss) == pytest.approx(np.mean(f - r + 4.0 * squared), rel=1e-5)
    assert float(aux["grad_norm"]) == pytest.approx(np.sqrt(squared).mean(), rel=1e-5)
    assert "gradient_penalty" not in aux


def test_lazy_split_main_loss_without_penalties_and_weighted_penalty_step(batch):
    reals, fakes, mix = batch
    cfg = losses.LossConfig(gp_lambda=2.0, r1_gamma=1.0, drift=0.01, reg_interval=3)
    both, _ = losses.discriminator_loss(cfg, _quadratic_critic, reals, fakes, mix, None)
    main, aux = losses.discriminator_loss(cfg, _quadratic_critic, reals, fakes, mix, None, penalties=False)
    penalty, penalty_aux = losses.penalty_loss(cfg, _quadratic_critic, reals, fakes, mix)
    assert set(aux) == {"real_score", "fake_score"}
    assert set(penalty_aux) == {"gradient_penalty", "grad_norm", "r1_penalty"}
    # main + penalty / k is the non-lazy loss: the penalty step carries the k-fold weight.
    assert float(main) + float(penalty) / 3 == pytest.approx(float(both), rel=1e-5)
    r_sq = np.sum(reals.astype(np.float64) ** 2, axis=(1, 2, 3))
    assert float(penalty_aux["r1_penalty"]) == pytest.approx(r_sq.mean(), rel=1e-5)


@pytest.mark.parametrize("steps", [1, 3])
def test_dat_perturbs_within_the_ball_towards_a_higher_d_loss(batch, steps):
    """Linear critic <w, x>: the WGAN D loss f - r rises fastest along -sign(w) for reals, +sign(w) for fakes,
    so PGD ends on the ball's corner: loss = mean(<w, fake - real>) + 2 eps ||w||_1."""
    reals, fakes, mix = batch
    weights = np.random.default_rng(4).standard_normal((4, 4, 3)).astype(np.float32)
    cfg = losses.LossConfig(gp_lambda=0.0, drift=0.0, dat_epsilon=0.05, dat_steps=steps)
    critic = _linear_critic(jnp.asarray(weights))
    loss, _ = losses.discriminator_loss(cfg, critic, reals, fakes, mix, None)
    w = weights.astype(np.float64)
    clean = np.mean(np.einsum("nhwc,hwc->n", fakes - reals, w))
    assert float(loss) == pytest.approx(clean + 2 * 0.05 * np.abs(w).sum(), rel=1e-5)
    adv_reals, adv_fakes = losses.adversarial_inputs(cfg, critic, jnp.asarray(reals), jnp.asarray(fakes))
    np.testing.assert_allclose(
        np.asarray(adv_reals) - reals, np.broadcast_to(-0.05 * np.sign(w), reals.shape), atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(adv_fakes) - fakes, np.broadcast_to(0.05 * np.sign(w), fakes.shape), atol=1e-6
    )


def test_dat_fgsm_on_a_quadratic_critic_matches_numpy(batch):
    """D(x) = sum(x^2) / 2 with the logistic loss: FGSM moves reals by -eps sign(x), fakes by +eps sign(x)."""
    reals, fakes, mix = batch
    cfg = losses.LossConfig(name="logistic", gp_lambda=0.0, drift=0.0, dat_epsilon=0.1, dat_steps=1)
    loss, aux = losses.discriminator_loss(cfg, _quadratic_critic, reals, fakes, mix, None)
    r64, f64 = reals.astype(np.float64), fakes.astype(np.float64)
    r = 0.5 * np.sum((r64 - 0.1 * np.sign(r64)) ** 2, axis=(1, 2, 3))
    f = 0.5 * np.sum((f64 + 0.1 * np.sign(f64)) ** 2, axis=(1, 2, 3))
    softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
    assert float(loss) == pytest.approx(np.mean(softplus(f) + softplus(-r)), rel=1e-5)
    assert float(aux["real_score"]) == pytest.approx(r.mean(), rel=1e-5)
    # no gradient flows through the perturbation: D's parameter gradient is that at the perturbed inputs
    w = jnp.asarray(np.random.default_rng(5).standard_normal((4, 4, 3)).astype(np.float32))
    cfg = losses.LossConfig(gp_lambda=0.0, drift=0.0, dat_epsilon=0.1)
    grad = jax.grad(lambda w: losses.discriminator_loss(cfg, _linear_critic(w), reals, fakes, mix, None)[0])(w)
    adv_reals, adv_fakes = losses.adversarial_inputs(cfg, _linear_critic(w), jnp.asarray(reals), jnp.asarray(fakes))
    np.testing.assert_allclose(
        np.asarray(grad), np.mean(np.asarray(adv_fakes) - np.asarray(adv_reals), axis=0), rtol=1e-5, atol=1e-6
    )


def test_dat_settings_are_checked():
    with pytest.raises(ValueError, match="loss.dat_epsilon must be a number >= 0"):
        losses.LossConfig(dat_epsilon=-0.1)
    with pytest.raises(ValueError, match="loss.dat_steps must be an integer >= 1"):
        losses.LossConfig(dat_steps=0)


def _numpy_kernel(kernel, x, y):
    d2 = np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    if kernel == "rq":
        return sum((1 + d2 / (2 * a)) ** (-a) for a in (0.2, 0.5, 1.0, 2.0, 5.0))
    return sum(np.exp(-d2 / (2 * s * s)) for s in (1.0, 2.0, 4.0, 8.0, 16.0))


def _numpy_mmd2(kernel, r, f):
    n, m = len(r), len(f)
    k_rr, k_ff, k_rf = _numpy_kernel(kernel, r, r), _numpy_kernel(kernel, f, f), _numpy_kernel(kernel, r, f)
    off = lambda k: k.sum() - np.trace(k)  # noqa: E731
    return off(k_rr) / (n * (n - 1)) + off(k_ff) / (m * (m - 1)) - 2 * k_rf.mean()


@pytest.mark.parametrize("kernel", ["rq", "rbf"])
def test_mmd_losses_and_witness_penalty_match_numpy(batch, kernel):
    """Features h(x) = x W (linear): the MMD of the features, and the witness's gradient W^T grad_h w in closed form."""
    reals, fakes, mix = batch
    w = np.random.default_rng(6).standard_normal((48, 5)).astype(np.float32) * 0.3

    def critic(images):
        return jnp.matmul(images.reshape(images.shape[0], -1), jnp.asarray(w), precision=jax.lax.Precision.HIGHEST)

    cfg = losses.LossConfig(name="mmd", mmd_kernel=kernel, gp_lambda=2.0, drift=0.0)
    loss, aux = losses.discriminator_loss(cfg, critic, reals, fakes, mix, None)
    w64 = w.astype(np.float64)
    r, f = reals.reshape(6, -1) @ w64, fakes.reshape(6, -1) @ w64
    mmd2 = _numpy_mmd2(kernel, r, f)
    x_hat = (reals + (fakes - reals) * mix[:, None, None, None]).reshape(6, -1).astype(np.float64)
    h = x_hat @ w64

    def grad_k(y):  # d/dh of sum over the mixture of k(h, y_j), per (sample, j): [N, M, F]
        diff = h[:, None, :] - y[None, :, :]
        d2 = np.sum(diff**2, axis=-1)[..., None]
        if kernel == "rq":
            return sum(-((1 + d2 / (2 * a)) ** (-a - 1)) * diff for a in (0.2, 0.5, 1.0, 2.0, 5.0))
        return sum(-np.exp(-d2 / (2 * s * s)) * diff / (s * s) for s in (1.0, 2.0, 4.0, 8.0, 16.0))

    grad_h = grad_k(r).mean(axis=1) - grad_k(f).mean(axis=1)
    norms = np.linalg.norm(grad_h @ w64.T, axis=1)
    assert float(loss) == pytest.approx(-mmd2 + 2.0 * np.mean((norms - 1) ** 2), rel=1e-4, abs=1e-6)
    assert float(aux["grad_norm"]) == pytest.approx(norms.mean(), rel=1e-4)
    witness_real = _numpy_kernel(kernel, r, r).mean(axis=1) - _numpy_kernel(kernel, r, f).mean(axis=1)
    assert float(aux["real_score"]) == pytest.approx(witness_real.mean(), rel=1e-4, abs=1e-6)
    g_loss = losses.generator_loss(cfg, critic, fakes, None, reals)
    assert float(g_loss) == pytest.approx(mmd2, rel=1e-4, abs=1e-6)


def test_mmd_is_zero_in_expectation_and_positive_between_different_distributions():
    rng = np.random.default_rng(7)
    same = [
        float(
            losses.mmd2_unbiased(
                "rq",
                jnp.asarray(rng.standard_normal((64, 4)), jnp.float32),
                jnp.asarray(rng.standard_normal((64, 4)), jnp.float32),
            )
        )
        for _ in range(20)
    ]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(20)  # unbiased: mean zero within its error
    shifted = float(
        losses.mmd2_unbiased(
            "rbf",
            jnp.asarray(rng.standard_normal((64, 4)), jnp.float32),
            jnp.asarray(rng.standard_normal((64, 4)) + 2.0, jnp.float32),
        )
    )
    assert shifted > 10 * np.std(same)


def test_mmd_settings_are_checked_in_one_line():
    with pytest.raises(
        ValueError,
        match=r"loss.name='mmd' takes only the gradient penalty on its witness "
        r"\(gp_lambda\); set loss.drift=0.001 to 0",
    ):
        losses.LossConfig(name="mmd")
    with pytest.raises(ValueError, match="loss.mmd_kernel must be one of"):
        losses.LossConfig(name="mmd", drift=0.0, mmd_kernel="linear")
