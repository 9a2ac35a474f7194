"""Every PGGAN layer against an independent NumPy computation on random inputs."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pggan.model import layers
from tests import np_reference as ref

pytestmark = pytest.mark.accelerator  # numerics that depend on the device's matmul precision


def _random(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _params(module):
    return {k: np.asarray(v, np.float64) for k, v in nnx.to_pure_dict(nnx.state(module, nnx.Param)).items()}


@pytest.mark.parametrize("gain", [math.sqrt(2), math.sqrt(2) / 4, 1.0])
def test_equalized_dense_scales_weights_at_runtime(gain):
    layer = layers.EqualizedDense(24, 7, gain=gain, rngs=nnx.Rngs(0))
    layer.bias[...] = jnp.asarray(_random((7,), 1))  # a non-zero bias must be added unscaled
    x = _random((5, 24), 2)
    p = _params(layer)
    expected = x @ (p["kernel"] * gain / math.sqrt(24)) + p["bias"]
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_equalized_init_is_unit_normal_weights_and_zero_bias():
    layer = layers.EqualizedConv(64, 64, 3, rngs=nnx.Rngs(0))
    kernel = np.asarray(layer.kernel[...])
    assert abs(kernel.std() - 1.0) < 0.02 and abs(kernel.mean()) < 0.02
    assert not np.asarray(layer.bias[...]).any()
    assert layer.runtime_scale == pytest.approx(math.sqrt(2) / math.sqrt(9 * 64))


def test_without_wscale_init_has_he_std_and_no_runtime_scale():
    layer = layers.EqualizedDense(400, 300, use_wscale=False, rngs=nnx.Rngs(0))
    assert layer.runtime_scale == 1.0
    assert np.asarray(layer.kernel[...]).std() == pytest.approx(math.sqrt(2 / 400), rel=0.02)


def test_equalized_conv_forms_match_numpy():
    layer = layers.EqualizedConv(5, 6, 3, rngs=nnx.Rngs(3))
    layer.bias[...] = jnp.asarray(_random((6,), 4))
    p = _params(layer)
    x = _random((2, 8, 8, 5), 5)
    w = p["kernel"] * math.sqrt(2) / math.sqrt(45)
    np.testing.assert_allclose(np.asarray(layer(x)), ref.conv2d_same(x, w) + p["bias"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        np.asarray(layer.upsample_conv(x)), ref.conv2d_same(ref.upsample(x), w) + p["bias"], rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(
        np.asarray(layer.conv_downsample(x)), ref.downsample(ref.conv2d_same(x, w)) + p["bias"], rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("impl", layers.UPSAMPLE_CONV_IMPLS)
def test_upsample_conv_forms_are_the_same_function(impl):
    layer = layers.EqualizedConv(5, 6, 3, upsample_impl=impl, rngs=nnx.Rngs(3))
    layer.bias[...] = jnp.asarray(_random((6,), 4))
    p = _params(layer)
    x = _random((2, 5, 7, 5), 6)
    w = p["kernel"] * math.sqrt(2) / math.sqrt(45)
    np.testing.assert_allclose(
        np.asarray(layer.upsample_conv(x)), ref.conv2d_same(ref.upsample(x), w) + p["bias"], rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("impl", layers.CONV_DOWNSAMPLE_IMPLS)
def test_conv_downsample_forms_are_the_same_function(impl):
    layer = layers.EqualizedConv(5, 6, 3, downsample_impl=impl, rngs=nnx.Rngs(3))
    layer.bias[...] = jnp.asarray(_random((6,), 4))
    p = _params(layer)
    x = _random((2, 8, 6, 5), 7)
    w = p["kernel"] * math.sqrt(2) / math.sqrt(45)
    np.testing.assert_allclose(
        np.asarray(layer.conv_downsample(x)), ref.downsample(ref.conv2d_same(x, w)) + p["bias"], rtol=1e-4, atol=1e-4
    )


def test_one_by_one_conv_with_gain_one():
    layer = layers.EqualizedConv(4, 3, 1, gain=1.0, rngs=nnx.Rngs(0))
    p = _params(layer)
    x = _random((2, 4, 4, 4))
    expected = np.einsum("nhwc,co->nhwo", x, p["kernel"][0, 0] / 2.0)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-6)


def test_pixel_norm_matches_numpy_and_keeps_dtype():
    x = _random((3, 4, 4, 16)) * 5
    np.testing.assert_allclose(np.asarray(layers.pixel_norm(x)), ref.pixel_norm(x.astype(np.float64)), rtol=1e-5)
    y = layers.pixel_norm(jnp.asarray(x, jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.mean(np.square(np.asarray(y, np.float32)), -1), 1.0, rtol=2e-2)


@pytest.mark.parametrize("batch", [8, 12, 3, 1])
def test_minibatch_stddev_matches_strided_groups(batch):
    x = _random((batch, 4, 4, 6), batch) * np.arange(1, batch + 1)[:, None, None, None]
    out = np.asarray(layers.minibatch_stddev(jnp.asarray(x)))
    np.testing.assert_allclose(out, ref.minibatch_stddev(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_minibatch_stddev_group_membership_is_strided():
    # With N = 8, G = 4, M = 2: samples {0, 2, 4, 6} form one group, {1, 3, 5, 7} the other.
    x = np.zeros((8, 2, 2, 1), np.float32)
    x[[0, 2, 4, 6]] = np.array([0.0, 1.0, 2.0, 3.0])[:, None, None, None]
    stat = np.asarray(layers.minibatch_stddev(jnp.asarray(x)))[:, 0, 0, 1]
    np.testing.assert_allclose(stat[[0, 2, 4, 6]], np.sqrt(np.var([0, 1, 2, 3]) + 1e-8), rtol=1e-6)
    np.testing.assert_allclose(stat[[1, 3, 5, 7]], np.sqrt(1e-8), rtol=1e-3)


def test_minibatch_stddev_rejects_indivisible_batch():
    with pytest.raises(ValueError, match="not divisible"):
        layers.minibatch_stddev(jnp.zeros((6, 4, 4, 2)))


def test_minibatch_stddev_runs_in_float32_for_bfloat16_inputs():
    x = _random((4, 4, 4, 8)) * 300 + 1000  # large offset: the variance is lost in bfloat16 arithmetic
    out = layers.minibatch_stddev(jnp.asarray(x, jnp.bfloat16))
    assert out.dtype == jnp.bfloat16
    expected = ref.minibatch_stddev(np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64))[..., -1]
    np.testing.assert_allclose(np.asarray(out[..., -1], np.float32), expected, rtol=1e-2)


def test_resampling_and_fade_match_numpy():
    x = _random((2, 8, 8, 3))
    np.testing.assert_array_equal(np.asarray(layers.upsample2x(x)), ref.upsample(x))
    np.testing.assert_allclose(np.asarray(layers.downsample2x(x)), ref.downsample(x), rtol=1e-6)
    alpha = 0.3
    expected = ref.lerp(x, ref.upsample(ref.downsample(x)), 1 - alpha)
    np.testing.assert_allclose(np.asarray(layers.fade_images(x, alpha)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(layers.fade_images(x, 1.0)), x)


def test_leaky_relu():
    x = _random((100,))
    np.testing.assert_allclose(np.asarray(layers.leaky_relu(x)), ref.lrelu(x), rtol=1e-7)
