"""Spectral normalization and GraN against NumPy: singular values, the stated GraN bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pggan.model import networks, normalization

SPEC = networks.ModelSpec(resolution=8, latent_size=8, fmap_base=32, fmap_max=16, label_size=3)


def _kernel(params, path):
    for key in path:
        params = params[key]
    return params["kernel"]


@pytest.fixture(scope="module")
def discriminator():
    _, d = networks.build_networks(SPEC, seed=0)
    return d


def test_power_iterations_normalize_every_layer_to_spectral_norm_one(discriminator):
    sn = normalization.SpectralNorm(discriminator)
    params = networks.parameters(discriminator)
    vectors = sn.update_vectors(params, sn.init_vectors(jax.random.key(0)), iterations=100)
    weights = sn.effective_weights(params, vectors)
    assert len(weights) == 7  # from_rgb x 2, conv0, conv1, conv, dense0, dense1
    for path, weight in weights.items():
        kernel = np.asarray(_kernel(params, path), np.float64).reshape(-1, weight.shape[-1])
        singular = np.linalg.svd(kernel, compute_uv=False)
        np.testing.assert_allclose(
            np.linalg.svd(np.asarray(weight, np.float64), compute_uv=False)[0], 1.0, rtol=1e-4, err_msg=str(path)
        )
        # The layer computes kernel / sigma(kernel) whatever its equalized-LR scale.
        np.testing.assert_allclose(np.asarray(weight), kernel / singular[0], rtol=1e-4, atol=1e-6)


def test_one_power_iteration_gives_a_lower_bound_and_gradients_flow_through_the_kernel():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((36, 5)).astype(np.float32)
    u = normalization.power_iterate(jnp.asarray(matrix), jnp.asarray(rng.standard_normal(5), jnp.float32), 1)
    sigma = np.linalg.svd(matrix, compute_uv=False)[0]
    estimate = float(normalization.sigma_estimate(jnp.asarray(matrix), u))
    assert 0.5 * sigma < estimate <= sigma * (1 + 1e-6)
    # With u converged to the top right singular vector, d sigma / dM = v u^T (u held constant).
    u_top = normalization.power_iterate(jnp.asarray(matrix), u, 200)
    grad = jax.grad(normalization.sigma_estimate)(jnp.asarray(matrix), u_top)
    left, _, right = np.linalg.svd(matrix.astype(np.float64))
    np.testing.assert_allclose(np.abs(np.asarray(grad)), np.abs(np.outer(left[:, 0], right[0])), atol=1e-4)


def _leaky_mlp(w1, b1, w2, b2):
    """A piecewise-linear critic [N, 4, 4, 3] -> [N, 1 + 2] (leaky ReLU hidden layer; 2 'label' columns)."""

    def critic(images):
        h = images.reshape(images.shape[0], -1) @ w1 + b1
        return jnp.maximum(h, 0.2 * h) @ w2 + b2

    return critic


def test_gran_matches_its_definition_and_is_piecewise_k_lipschitz():
    rng = np.random.default_rng(1)
    w1, b1 = rng.standard_normal((48, 16)) * 0.3, rng.standard_normal(16) * 0.1
    w2, b2 = rng.standard_normal((16, 3)), rng.standard_normal(3)
    x = rng.uniform(-1, 1, (8, 4, 4, 3))
    k, eps = 2.5, 0.3
    critic = _leaky_mlp(*(jnp.asarray(a, jnp.float32) for a in (w1, b1, w2, b2)))
    out = normalization.gran(critic, k, eps)(jnp.asarray(x, jnp.float32))
    # NumPy: inside the linear piece of x, f(x) = <g, x> + c with g = W1 diag(slope) w2.
    pre = x.reshape(8, -1) @ w1 + b1
    slope = np.where(pre > 0, 1.0, 0.2)
    f = np.maximum(pre, 0.2 * pre) @ w2 + b2
    grads = (slope * w2[:, 0]) @ w1.T  # [N, 48]
    n = np.linalg.norm(grads, axis=1)
    expected = k * f[:, 0] * n / (n**2 + eps)
    np.testing.assert_allclose(np.asarray(out[:, 0]), expected, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(out[:, 1:]), f[:, 1:], rtol=1e-5)  # class logits untouched
    # The stated bounds: ||grad g|| = K n^2 / (n^2 + eps) < K inside each piece; |g| <= K |f| / n.
    grad_g = jax.grad(lambda images: jnp.sum(normalization.gran(critic, k, eps)(images)[:, 0]))(
        jnp.asarray(x, jnp.float32)
    )
    grad_norms = np.linalg.norm(np.asarray(grad_g).reshape(8, -1), axis=1)
    np.testing.assert_allclose(grad_norms, k * n**2 / (n**2 + eps), rtol=1e-4)
    assert (grad_norms < k).all()
    assert (np.abs(np.asarray(out[:, 0])) <= k * np.abs(f[:, 0]) / n * (1 + 1e-5)).all()


def test_gran_is_only_piecewise_lipschitz_its_jumps_between_pieces_grow_with_the_critic():
    # f(x) = c + s(t) t with t = mean(x) and slope s = 1 for t < 0, 10 for t >= 0: continuous, two linear
    # pieces. Across the kink g = K f n / (n^2 + eps) jumps by about K c (1 / n_left - 1 / n_right), with
    # n = s / sqrt(48) the gradient norm: unbounded as c grows, however close the two inputs are
    # (why the linear WGAN objective needs the drift term with GraN, pggan/training/landscape.py).
    k, eps, step = 1.0, 1e-6, 1e-4
    x = jnp.stack([jnp.full((4, 4, 3), -step / 2), jnp.full((4, 4, 3), step / 2)])  # ||x0 - x1|| = sqrt(48) step
    jumps = []
    for c in (1.0, 100.0):

        def critic(images, c=c):
            t = jnp.mean(images, axis=(1, 2, 3))
            return (c + jnp.where(t < 0, 1.0, 10.0) * t)[:, None]

        g = np.asarray(normalization.gran(critic, k, eps)(x)[:, 0])
        n = np.array([1.0, 10.0]) / np.sqrt(48)
        f = c + np.array([1.0, 10.0]) * np.array([-step / 2, step / 2])
        np.testing.assert_allclose(g, k * f * n / (n**2 + eps), rtol=1e-4)
        jumps.append(abs(g[0] - g[1]))
    distance = np.sqrt(48) * step
    assert jumps[0] > 1000 * k * distance  # far beyond what a K-Lipschitz function may change
    np.testing.assert_allclose(jumps[1] / jumps[0], 100.0, rtol=1e-3)


def test_gran_is_finite_where_the_critic_is_flat():
    critic = lambda images: jnp.zeros((images.shape[0], 1)) + jnp.sum(images * 0.0, axis=(1, 2, 3))[:, None]  # noqa: E731
    x = jnp.ones((2, 4, 4, 3))
    value, grad = jax.value_and_grad(lambda images: jnp.sum(normalization.gran(critic, 1.0, 1e-4)(images)))(x)
    assert float(value) == 0.0 and np.isfinite(np.asarray(grad)).all()


def test_normalization_config_validation():
    with pytest.raises(ValueError, match="d_normalization.method"):
        normalization.NormalizationConfig(method="weight")
    with pytest.raises(ValueError, match="power_iterations"):
        normalization.NormalizationConfig(power_iterations=0)
    with pytest.raises(ValueError, match="unknown d_normalization"):
        normalization.NormalizationConfig.from_config({"sn": True})
