"""Generator and Discriminator: parameter counts, NumPy equivalence, fade continuity, compiles."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pggan.model import layers, networks
from tests import np_reference as ref

pytestmark = pytest.mark.accelerator  # numerics that depend on the device's matmul precision

SMALL = networks.ModelSpec(resolution=32, latent_size=16, fmap_base=128, fmap_max=16)


def _pure(module):
    to_np = lambda v: np.asarray(v, np.float64)  # noqa: E731
    return jax.tree.map(to_np, nnx.to_pure_dict(nnx.state(module, nnx.Param)))


@pytest.fixture(scope="module")
def small_nets():
    return networks.build_networks(SMALL, seed=0)


def _randomize_biases(module, seed):
    """Biases start at zero; give them values so the tests see whether they are applied correctly."""
    state = nnx.state(module, nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    key = jax.random.key(seed)
    new = [
        jax.random.normal(jax.random.fold_in(key, i), v.shape) * 0.1 if "bias" in jax.tree_util.keystr(p) else v
        for i, (p, v) in enumerate(leaves)
    ]
    nnx.update(module, jax.tree_util.tree_unflatten(treedef, new))


def _counted_by_hand(resolution, channels=3, latent=512, labels=0, fmap_base=8192, fmap_max=512):
    """(G, D) parameter counts of G_paper / D_paper written out layer by layer (weights + biases)."""
    nf = lambda stage: min(int(fmap_base / 2.0**stage), fmap_max)  # noqa: E731
    g = (latent + labels) * 16 * nf(1) + nf(1)  # 4x4 dense: bias per channel, after the reshape
    g += 9 * nf(1) * nf(1) + nf(1)  # 4x4 conv
    d = 9 * (nf(1) + 1) * nf(1) + nf(1)  # 4x4 conv after minibatch stddev (one extra feature map)
    d += 16 * nf(1) * nf(0) + nf(0) + nf(0) * (1 + labels) + (1 + labels)  # Dense0, Dense1
    for k in range(2, int(math.log2(resolution)) + 1):
        g += nf(k - 1) * channels + channels  # ToRGB
        d += channels * nf(k - 1) + nf(k - 1)  # FromRGB
        if k >= 3:
            g += 9 * nf(k - 2) * nf(k - 1) + nf(k - 1) + 9 * nf(k - 1) * nf(k - 1) + nf(k - 1)
            d += 9 * nf(k - 1) * nf(k - 1) + nf(k - 1) + 9 * nf(k - 1) * nf(k - 2) + nf(k - 2)
    return g, d


def _counts(spec):
    return (
        networks.count_parameters(networks.abstract_generator(spec)),
        networks.count_parameters(networks.abstract_discriminator(spec)),
    )


def test_official_full_model_parameter_counts_are_exact():
    """The official 1024 networks: G 23,079,115 and D 23,087,249 parameters (REFERENCE counts of G_paper/D_paper)."""
    assert _counts(networks.ModelSpec()) == (23_079_115, 23_087_249)
    assert _counted_by_hand(1024) == (23_079_115, 23_087_249)


def test_small_conditional_model_parameter_counts_are_exact():
    spec = networks.ModelSpec(resolution=32, num_channels=1, latent_size=16, label_size=10, fmap_base=128, fmap_max=16)
    assert _counts(spec) == _counted_by_hand(32, channels=1, latent=16, labels=10, fmap_base=128, fmap_max=16)


def test_generator_4x4_bias_is_one_value_per_channel_shared_by_the_pixels(small_nets):
    g, _ = small_nets
    dense = networks.parameters(g)["blocks"][0]["dense"]
    assert dense["bias"].shape == (SMALL.channels(1),)
    assert dense["kernel"].shape == (SMALL.latent_size, 16 * SMALL.channels(1))


def test_channel_widths_follow_nf():
    spec = networks.ModelSpec()
    assert [spec.channels(k - 1) for k in range(2, 11)] == [512, 512, 512, 512, 256, 128, 64, 32, 16]


@pytest.mark.parametrize("resolution,alpha", [(4, 1.0), (8, 0.3), (16, 1.0), (32, 0.7)])
def test_networks_match_numpy_reference(small_nets, resolution, alpha):
    g, d = small_nets
    _randomize_biases(g, 1)
    _randomize_biases(d, 2)
    z = np.random.default_rng(resolution).standard_normal((8, SMALL.latent_size)).astype(np.float32)
    images = np.asarray(g(z, resolution=resolution, alpha=alpha))
    np.testing.assert_allclose(
        images, ref.generator(_pure(g), z.astype(np.float64), resolution, alpha), rtol=2e-4, atol=2e-4
    )
    scores = np.asarray(d(images, resolution=resolution, alpha=alpha))
    np.testing.assert_allclose(
        scores, ref.discriminator(_pure(d), images.astype(np.float64), resolution, alpha), rtol=2e-4, atol=2e-4
    )


@pytest.mark.parametrize("upsample_impl,downsample_impl", [("transposed", "strided"), ("subpixel", "naive")])
def test_resampling_forms_give_the_same_networks_and_gradients(small_nets, upsample_impl, downsample_impl):
    g, d = small_nets
    spec = dataclasses.replace(SMALL, upsample_impl=upsample_impl, downsample_impl=downsample_impl)
    g_fast = networks.merge_parameters(networks.abstract_generator(spec), networks.parameters(g))
    d_fast = networks.merge_parameters(networks.abstract_discriminator(spec), networks.parameters(d))
    z = jax.random.normal(jax.random.key(0), (4, SMALL.latent_size))

    def penalty(d_model, images):  # the WGAN-GP double backward goes through the resampling too
        grad = jax.grad(lambda x: jnp.sum(d_model(x, resolution=16, alpha=0.6)))(images)
        return jnp.sum(grad**2)

    images, images_fast = g(z, resolution=16, alpha=0.6), g_fast(z, resolution=16, alpha=0.6)
    np.testing.assert_allclose(np.asarray(images_fast), np.asarray(images), rtol=1e-4, atol=1e-5)
    grads = nnx.state(nnx.grad(penalty)(d, images))
    grads_fast = nnx.state(nnx.grad(penalty)(d_fast, images))
    for a, b in zip(jax.tree.leaves(grads_fast), jax.tree.leaves(grads)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-5)


def test_paper_block_order_matches_numpy_and_differs_from_official():
    spec = networks.ModelSpec(resolution=8, latent_size=8, fmap_base=32, fmap_max=8, d_downsample_order="conv_act_pool")
    _, d_paper = networks.build_networks(spec, seed=0)
    _randomize_biases(d_paper, 3)
    images = np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype(np.float32)
    out = np.asarray(d_paper(images, resolution=8, alpha=1.0))
    params = _pure(d_paper)
    np.testing.assert_allclose(
        out, ref.discriminator(params, images, 8, 1.0, order="conv_act_pool"), rtol=2e-4, atol=2e-4
    )
    official = ref.discriminator(params, images, 8, 1.0, order="conv_pool_act")
    assert np.abs(out - official).max() > 1e-3


@pytest.mark.parametrize("resolution", [8, 16, 32])
def test_growth_is_continuous_at_alpha_zero(small_nets, resolution):
    g, d = small_nets
    z = np.random.default_rng(0).standard_normal((8, SMALL.latent_size)).astype(np.float32)
    grown = g(z, resolution=resolution, alpha=0.0)
    previous = g(z, resolution=resolution // 2, alpha=1.0)
    np.testing.assert_allclose(np.asarray(grown), np.asarray(layers.upsample2x(previous)), rtol=1e-5, atol=1e-5)

    images = jax.random.normal(jax.random.key(1), (8, resolution, resolution, 3))
    grown_score = d(images, resolution=resolution, alpha=0.0)
    previous_score = d(layers.downsample2x(images), resolution=resolution // 2, alpha=1.0)
    np.testing.assert_allclose(np.asarray(grown_score), np.asarray(previous_score), rtol=1e-5, atol=1e-5)


def test_old_path_has_no_influence_at_alpha_one(small_nets):
    g, d = small_nets
    z = jax.random.normal(jax.random.key(0), (4, SMALL.latent_size))
    images = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
    g_def, g_params = nnx.split(g)
    d_def, d_params = nnx.split(d)

    @jax.jit
    def grads(g_params, d_params):
        g_loss = lambda p: jnp.sum(nnx.merge(g_def, p)(z, resolution=16, alpha=1.0) ** 2)  # noqa: E731
        d_loss = lambda p: jnp.sum(nnx.merge(d_def, p)(images, resolution=16, alpha=1.0))  # noqa: E731
        return jax.grad(g_loss)(g_params), jax.grad(d_loss)(d_params)

    g_grads, d_grads = grads(g_params, d_params)
    old_rgb = jax.tree.leaves(g_grads["to_rgb"][1])  # the 8x8 toRGB
    old_from = jax.tree.leaves(d_grads["from_rgb"][1])  # the 8x8 fromRGB
    assert all(not np.asarray(x).any() for x in old_rgb + old_from)
    assert any(np.asarray(x).any() for x in jax.tree.leaves(g_grads["to_rgb"][2]))
    assert any(np.asarray(x).any() for x in jax.tree.leaves(d_grads["from_rgb"][2]))


def test_one_compile_per_resolution_across_alphas(small_nets):
    g, _ = small_nets
    graphdef, state = nnx.split(g)
    traces = []

    def forward(state, z, alpha, resolution):
        traces.append(resolution)
        return nnx.merge(graphdef, state)(z, resolution=resolution, alpha=alpha)

    forward_jit = jax.jit(forward, static_argnames="resolution")
    z = jnp.ones((4, SMALL.latent_size))
    for resolution in (8, 16):
        for alpha in np.linspace(0.0, 1.0, 5):
            forward_jit(state, z, jnp.float32(alpha), resolution=resolution)
    assert traces == [8, 16]


def test_all_resolutions_have_shapes_and_finite_gradients():
    spec = networks.ModelSpec(resolution=1024, latent_size=8, fmap_base=1024, fmap_max=4)
    g, d = networks.build_networks(spec, seed=0)
    g_def, g_params = nnx.split(g)
    d_def, d_params = nnx.split(d)
    z = jax.random.normal(jax.random.key(0), (2, 8))

    def loss(g_params, d_params, resolution):
        images = nnx.merge(g_def, g_params)(z, resolution=resolution, alpha=0.5)
        return jnp.mean(nnx.merge(d_def, d_params)(images, resolution=resolution, alpha=0.5)), images.shape

    grads = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True), static_argnums=2)
    for resolution in [4, 8, 16, 32, 64, 128, 256, 512, 1024]:
        (g_grad, d_grad), shape = grads(g_params, d_params, resolution)
        assert shape == (2, resolution, resolution, 3)
        for leaf in jax.tree.leaves((g_grad, d_grad)):
            assert np.isfinite(np.asarray(leaf)).all()


def test_class_conditioning():
    spec = networks.ModelSpec(resolution=8, latent_size=8, label_size=5, fmap_base=32, fmap_max=8)
    g, d = networks.build_networks(spec, seed=0)
    z = jax.random.normal(jax.random.key(0), (4, 8))
    labels = jax.nn.one_hot(jnp.array([0, 1, 2, 3]), 5)
    images = g(z, labels, resolution=8)
    assert d(images, resolution=8).shape == (4, 6)
    other = g(z, jax.nn.one_hot(jnp.array([4, 4, 4, 4]), 5), resolution=8)
    assert np.abs(np.asarray(images - other)).max() > 1e-4
    # Official semantics: PixelNorm normalises the concatenation [z, labels].
    p = _pure(g)
    combo = np.concatenate([np.asarray(z), np.asarray(labels)], axis=1).astype(np.float64)
    np.testing.assert_allclose(
        np.asarray(g(z, labels, resolution=4)), ref.generator(p, combo, 4, 1.0), rtol=2e-4, atol=2e-4
    )
    with pytest.raises(ValueError, match="one-hot labels"):
        g(z, resolution=8)


def test_bfloat16_compute_keeps_float32_parameters_and_agrees():
    spec32 = networks.ModelSpec(resolution=16, latent_size=16, fmap_base=64, fmap_max=16)
    spec16 = networks.ModelSpec(**{**spec32.__dict__, "compute_dtype": "bfloat16"})
    g32, d32 = networks.build_networks(spec32, seed=0)
    g16, d16 = networks.build_networks(spec16, seed=0)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(g16, nnx.Param)))
    z = jax.random.normal(jax.random.key(0), (4, 16))
    a, b = g32(z, resolution=16, alpha=0.5), g16(z, resolution=16, alpha=0.5)
    assert b.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=0.08 * float(jnp.abs(a).max()))
    s32, s16 = d32(a, resolution=16, alpha=0.5), d16(a, resolution=16, alpha=0.5)
    np.testing.assert_allclose(np.asarray(s16), np.asarray(s32), atol=0.08 * float(jnp.abs(s32).max()) + 0.02)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("resolution", 48, "power of two"),
        ("resolution", 2048, "power of two"),
        ("d_downsample_order", "pool_first", "d_downsample_order"),
        ("compute_dtype", "float16", "compute_dtype"),
        ("fmap_base", 64, "fmap_base"),
    ],
)
def test_model_spec_rejects_impossible_settings(field, value, message):
    with pytest.raises(ValueError, match=message):
        networks.ModelSpec(**{field: value})


def test_active_resolution_is_validated(small_nets):
    g, d = small_nets
    with pytest.raises(ValueError, match="active resolution"):
        g(jnp.ones((2, SMALL.latent_size)), resolution=64)
    with pytest.raises(ValueError, match="expects images"):
        d(jnp.ones((2, 8, 8, 3)), resolution=16)
