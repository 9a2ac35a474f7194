"""The PGGAN building blocks: equalized-learning-rate layers, PixelNorm, minibatch stddev, resampling.

Everything is NHWC. Parameters are stored in float32; each layer computes in its `dtype` (float32 or
bfloat16). Normalisation statistics (PixelNorm, minibatch stddev) are always computed in float32.

Equalized learning rate (Karras et al. 2018, section 4.1): weights are initialised N(0, 1) and
multiplied at run time by the He constant `gain / sqrt(fan_in)`; biases start at zero and are never
scaled. The scaling is applied to the (small) weight tensor, not to the activations.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

DEFAULT_GAIN = math.sqrt(2.0)
LRELU_SLOPE = 0.2
# Equivalent computations of "nearest 2x upsample, then 3x3 conv" and of "3x3 conv, then 2x2 average
# pool"; the choice is a speed setting (see tools/benchmark.py), never a semantic one.
UPSAMPLE_CONV_IMPLS = ("naive", "transposed", "subpixel")
CONV_DOWNSAMPLE_IMPLS = ("naive", "strided")
# Sub-pixel taps: output row 2i + a reads input rows (i - 1 + a + r) for r = 0, 1, each tap summing
# these rows of the 3x3 kernel.
_SUBPIXEL_TAPS = {0: ((0,), (1, 2)), 1: ((0, 1), (2,))}


def leaky_relu(x: jax.Array, slope: float = LRELU_SLOPE) -> jax.Array:
    """Leaky ReLU, `max(x, slope * x)`, in x's dtype."""
    return jnp.maximum(x, x * jnp.asarray(slope, x.dtype))


def pixel_norm(x: jax.Array, epsilon: float = 1e-8) -> jax.Array:
    """Normalises each pixel's feature vector to unit root-mean-square over the last (channel) axis.

    `x * rsqrt(mean(x**2, channels) + epsilon)`, computed in float32 and returned in x's dtype.
    Works for latents [N, C] and feature maps [N, H, W, C].
    """
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + epsilon)
    return y.astype(x.dtype)


def minibatch_stddev(x: jax.Array, group_size: int = 4) -> jax.Array:
    """Appends the minibatch standard deviation as one extra feature map (official semantics).

    Args:
      x: [N, H, W, C] features. N must be divisible by min(group_size, N).
      group_size: samples per statistics group.

    Returns:
      [N, H, W, C + 1]. The groups are strided as in the official code: the batch is reshaped to
      [G, N / G, ...], so sample n belongs to group n mod (N / G). Per group: subtract the group mean,
      biased variance, `sqrt(var + 1e-8)`, average over H, W, C; broadcast over the group's samples
      and pixels. Computed in float32, returned in x's dtype.
    """
    n, h, w, c = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch_stddev: batch {n} is not divisible by the group size {g}")
    y = x.astype(jnp.float32).reshape(g, n // g, h, w, c)
    y = y - jnp.mean(y, axis=0, keepdims=True)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)  # [M, H, W, C]
    y = jnp.mean(y, axis=(1, 2, 3))  # [M]
    y = jnp.tile(y, g).astype(x.dtype)  # [N]: sample n gets group n mod M
    y = jnp.broadcast_to(y[:, None, None, None], (n, h, w, 1))
    return jnp.concatenate([x, y], axis=-1)


def upsample2x(x: jax.Array) -> jax.Array:
    """Nearest-neighbour 2x upsampling: [N, H, W, C] -> [N, 2H, 2W, C]."""
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
    return x.reshape(n, 2 * h, 2 * w, c)


def downsample2x(x: jax.Array) -> jax.Array:
    """2x2 box-average downsampling: [N, H, W, C] -> [N, H/2, W/2, C] (H and W even)."""
    n, h, w, c = x.shape
    return jnp.mean(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4)).astype(x.dtype)


def fade(new: jax.Array, old: jax.Array, alpha: jax.Array | float) -> jax.Array:
    """Cross-fade during growth: `new` at alpha = 1, `old` at alpha = 0.

    Written as the official `lerp(new, old, t)` with t = 1 - alpha (t = lod - floor(lod)).
    """
    t = (1.0 - jnp.asarray(alpha, jnp.float32)).astype(new.dtype)
    return new + (old - new) * t


def fade_images(images: jax.Array, alpha: jax.Array | float) -> jax.Array:
    """Blends real images toward their 2x-coarser version as the official `process_reals` does.

    Args:
      images: float [N, H, W, C] at the active resolution.
      alpha: fade-in weight of the newest resolution in [0, 1].

    Returns:
      `fade(images, upsample2x(downsample2x(images)), alpha)`, same shape and dtype.
    """
    return fade(images, upsample2x(downsample2x(images)), alpha)


class EqualizedDense(nnx.Module):
    """Fully connected layer with equalized learning rate and an unscaled bias.

    Input [N, in_features] (or [N, ...], flattened in row-major NHWC order). With an int `out_shape`
    the output is [N, out_shape] with one bias per output. With a tuple, e.g. (4, 4, C), the product
    is reshaped to [N, *out_shape] and the bias has one value per last-axis feature (C values shared
    by every position), as the official generator's 4x4 dense layer: kernel [in, prod(out_shape)],
    bias [out_shape[-1]].
    """

    def __init__(
        self,
        in_features: int,
        out_shape: int | tuple[int, ...],
        *,
        gain: float = DEFAULT_GAIN,
        use_wscale: bool = True,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.out_shape = (out_shape,) if isinstance(out_shape, int) else tuple(out_shape)
        std = gain / math.sqrt(in_features)
        init_std = 1.0 if use_wscale else std
        shape = (in_features, math.prod(self.out_shape))
        self.kernel = nnx.Param(init_std * jax.random.normal(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((self.out_shape[-1],), jnp.float32))
        self.runtime_scale = std if use_wscale else 1.0
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1).astype(self.dtype)
        w = (self.kernel[...] * self.runtime_scale).astype(self.dtype)
        return (x @ w).reshape(x.shape[0], *self.out_shape) + self.bias[...].astype(self.dtype)


class EqualizedConv(nnx.Module):
    """k x k convolution (stride 1, 'SAME' zero padding) with equalized learning rate and bias.

    Kernel layout HWIO [k, k, in, out]; input [N, H, W, in]; output [N, H, W, out].
    `upsample_conv` and `conv_downsample` run the same weights at a resolution change.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        gain: float = DEFAULT_GAIN,
        use_wscale: bool = True,
        dtype=jnp.float32,
        upsample_impl: str = "naive",
        downsample_impl: str = "naive",
        rngs: nnx.Rngs,
    ):
        if upsample_impl not in UPSAMPLE_CONV_IMPLS or downsample_impl not in CONV_DOWNSAMPLE_IMPLS:
            raise ValueError(f"unknown resampling convolution form {upsample_impl!r}/{downsample_impl!r}")
        fan_in = kernel_size * kernel_size * in_channels
        std = gain / math.sqrt(fan_in)
        init_std = 1.0 if use_wscale else std
        shape = (kernel_size, kernel_size, in_channels, out_channels)
        self.kernel = nnx.Param(init_std * jax.random.normal(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32))
        self.runtime_scale = std if use_wscale else 1.0
        self.dtype = dtype
        self.upsample_impl = upsample_impl
        self.downsample_impl = downsample_impl

    def scaled_kernel(self) -> jax.Array:
        """The effective kernel `kernel * gain / sqrt(fan_in)` in the compute dtype, HWIO."""
        return (self.kernel[...] * self.runtime_scale).astype(self.dtype)

    def _conv(self, x: jax.Array, kernel: jax.Array, strides=(1, 1), padding="SAME", lhs_dilation=None) -> jax.Array:
        return jax.lax.conv_general_dilated(
            x.astype(self.dtype),
            kernel,
            window_strides=strides,
            padding=padding,
            lhs_dilation=lhs_dilation,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    def _add_bias(self, y: jax.Array) -> jax.Array:
        return y + self.bias[...].astype(self.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self._add_bias(self._conv(x, self.scaled_kernel()))

    def upsample_conv(self, x: jax.Array) -> jax.Array:
        """Nearest 2x upsampling followed by this 3x3 convolution: [N, H, W, in] -> [N, 2H, 2W, out].

        Forms (same function): 'naive' upsamples then convolves (9 taps per output pixel);
        'transposed' is the official fused 4x4 stride-2 transposed convolution; 'subpixel' runs four
        2x2 convolutions on the low-resolution input, one per output pixel parity (4 taps per output
        pixel), and interleaves them.
        """
        w = self.scaled_kernel()
        if self.upsample_impl == "naive":
            return self._add_bias(self._conv(upsample2x(x.astype(self.dtype)), w))
        if self.upsample_impl == "transposed":
            return self._add_bias(self._conv(x, _box_summed_kernel(w), padding=((2, 2), (2, 2)), lhs_dilation=(2, 2)))
        n, h, wd, _ = x.shape
        parities = []
        for a in (0, 1):
            row = []
            for b in (0, 1):
                kernel = jnp.stack(
                    [
                        jnp.stack([sum(w[i, j] for i in rows for j in cols) for cols in _SUBPIXEL_TAPS[b]])
                        for rows in _SUBPIXEL_TAPS[a]
                    ]
                )
                row.append(self._conv(x, kernel, padding=((1 - a, a), (1 - b, b))))
            parities.append(jnp.stack(row, axis=3))  # [N, H, W, 2 (b), out]
        y = jnp.stack(parities, axis=2)  # [N, H, 2 (a), W, 2 (b), out]
        return self._add_bias(y.reshape(n, 2 * h, 2 * wd, -1))

    def conv_downsample(self, x: jax.Array) -> jax.Array:
        """This 3x3 convolution followed by 2x2 average pooling, then the bias (the official TF order).

        [N, H, W, in] -> [N, H/2, W/2, out]. Bias and pooling commute. Forms (same function): 'naive'
        convolves at full resolution then pools; 'strided' is the official fused 4x4 stride-2
        convolution with the box-summed kernel / 4.
        """
        w = self.scaled_kernel()
        if self.downsample_impl == "naive":
            return self._add_bias(downsample2x(self._conv(x, w)))
        return self._add_bias(self._conv(x, _box_summed_kernel(w) * 0.25, strides=(2, 2), padding=((1, 1), (1, 1))))


def _box_summed_kernel(w: jax.Array) -> jax.Array:
    """[3, 3, I, O] -> [4, 4, I, O]: the 3x3 kernel convolved with a 2x2 box (official fused kernels)."""
    p = jnp.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
    return p[1:, 1:] + p[:-1, 1:] + p[1:, :-1] + p[:-1, :-1]
