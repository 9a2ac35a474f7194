"""Independent NumPy (float64) implementation of the official G_paper / D_paper on the OFFICIAL layout.

Written from the official TensorFlow semantics, sharing no code with `pggan`: NCHW activations,
HWIO conv kernels, the fused upsampling as a stride-2 transposed convolution with the padded and summed
4x4 kernel (TF `conv2d_transpose`, 'SAME'), the fused downsampling as a stride-2 convolution with the
padded, summed and quartered kernel, equalized learning rate applied to the stored weights, and the
official recursive `grow` structure driven by the lod value (images always at full resolution).
`variables` maps official local names ('4x4/Dense/weight', ...) to arrays.
"""

from __future__ import annotations

import math

import numpy as np

SQRT2 = math.sqrt(2.0)


def _weight(variables, scope, gain, use_wscale, fan_in=None):
    w = np.asarray(variables[scope + "/weight"], np.float64)
    if fan_in is None:
        fan_in = np.prod(w.shape[:-1])
    return w * (gain / math.sqrt(fan_in)) if use_wscale else w


def _bias(variables, scope, x):
    b = np.asarray(variables[scope + "/bias"], np.float64)
    return x + (b if x.ndim == 2 else b.reshape(1, -1, 1, 1))


def lrelu(x):
    return np.maximum(x * 0.2, x)


def pixel_norm(x, epsilon):
    return x / np.sqrt(np.mean(x**2, axis=1, keepdims=True) + epsilon)


def dense(x, w):
    return x.reshape(x.shape[0], -1) @ w  # NCHW features flatten in (c, h, w) order


def conv2d(x, w):
    """Stride-1 'SAME' cross-correlation, NCHW input, HWIO kernel (odd size)."""
    k = w.shape[0]
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    out = np.zeros((n, w.shape[3], h, wd))
    for ky in range(k):
        for kx in range(k):
            out += np.einsum("nchw,co->nohw", xp[:, :, ky : ky + h, kx : kx + wd], w[ky, kx])
    return out


def _pad_and_sum_taps(w):
    """The official fused kernel: pad 3x3 to 5x5 and add its four 1-pixel shifts -> 4x4."""
    w = np.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
    return w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]


def upscale2d_conv2d(x, w):
    """TF conv2d_transpose(x, 4x4 kernel [k, k, out, in], stride 2, 'SAME'): the gradient of a stride-2
    'SAME' convolution, whose padding before is 1. Input pixel i scatters to output 2i + k - 1."""
    w4 = _pad_and_sum_taps(w)
    n, _, h, wd = x.shape
    full = np.zeros((n, w4.shape[2], 2 * h + 2, 2 * wd + 2))
    for ky in range(4):
        for kx in range(4):
            full[:, :, ky : ky + 2 * h : 2, kx : kx + 2 * wd : 2] += np.einsum("nchw,oc->nohw", x, w4[ky, kx])
    return full[:, :, 1 : 2 * h + 1, 1 : 2 * wd + 1]


def conv2d_downscale2d(x, w):
    """TF conv2d(x, 4x4 kernel * 0.25, stride 2, 'SAME') on even sizes: padding 1 before, 1 after."""
    w4 = _pad_and_sum_taps(w) * 0.25
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w4.shape[3], h // 2, wd // 2))
    for ky in range(4):
        for kx in range(4):
            out += np.einsum("nchw,co->nohw", xp[:, :, ky : ky + h : 2, kx : kx + wd : 2], w4[ky, kx])
    return out


def upscale2d(x, factor=2):
    return x.repeat(factor, axis=2).repeat(factor, axis=3)


def downscale2d(x, factor=2):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))


def minibatch_stddev(x, group_size):
    """Official grouping: reshape [G, M, C, H, W], so sample n is in group n mod M."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    m = n // g
    out = np.empty((n, 1, h, w))
    for group in range(m):
        members = x[group::m]  # samples group, group + M, ...
        std = np.sqrt(np.mean((members - members.mean(axis=0)) ** 2, axis=0) + 1e-8)
        out[group::m] = std.mean()
    return np.concatenate([x, out], axis=1)


def lerp(a, b, t):
    return a + (b - a) * t


def g_paper(variables, kw, latents, labels, lod):
    """Official generator output at full resolution: float64 NCHW [N, num_channels, R, R]."""
    log2 = int(math.log2(kw["resolution"]))
    ws, eps = kw["use_wscale"], kw["pixelnorm_epsilon"]

    def nf(stage):
        return min(int(kw["fmap_base"] / (2.0 ** (stage * kw["fmap_decay"]))), kw["fmap_max"])

    def pn(x):
        return pixel_norm(x, eps) if kw["use_pixelnorm"] else x

    def conv_layer(x, scope):
        return pn(lrelu(_bias(variables, scope, conv2d(x, _weight(variables, scope, SQRT2, ws)))))

    def block(x, res):
        scope = f"{2**res}x{2**res}"
        if res == 2:
            if kw["normalize_latents"]:
                x = pixel_norm(x, eps)
            x = dense(x, _weight(variables, scope + "/Dense", SQRT2 / 4, ws)).reshape(-1, nf(1), 4, 4)
            x = pn(lrelu(_bias(variables, scope + "/Dense", x)))
            return conv_layer(x, scope + "/Conv")
        if kw["fused_scale"]:
            w = _weight(variables, scope + "/Conv0_up", SQRT2, ws, fan_in=9 * x.shape[1])
            x = pn(lrelu(_bias(variables, scope + "/Conv0_up", upscale2d_conv2d(x, w))))
        else:
            x = conv_layer(upscale2d(x), scope + "/Conv0")
        return conv_layer(x, scope + "/Conv1")

    def torgb(x, res):
        scope = f"ToRGB_lod{log2 - res}"
        return _bias(variables, scope, conv2d(x, _weight(variables, scope, 1.0, ws)))

    def grow(x, res, level_lod):
        y = block(x, res)
        if level_lod > 0 and lod < level_lod:
            return grow(y, res + 1, level_lod - 1)
        if res > 2 and lod > level_lod:
            return upscale2d(lerp(torgb(y, res), upscale2d(torgb(x, res - 1)), lod - level_lod), 2**level_lod)
        return upscale2d(torgb(y, res), 2**level_lod)

    combo = np.concatenate([np.asarray(latents, np.float64), np.asarray(labels, np.float64)], axis=1)
    return grow(combo, 2, log2 - 2)


def d_paper(variables, kw, images, lod):
    """Official discriminator on full-resolution NCHW images: (scores [N, 1], label logits [N, label_size])."""
    log2 = int(math.log2(kw["resolution"]))
    ws = kw["use_wscale"]
    images = np.asarray(images, np.float64)

    def fromrgb(x, res):
        scope = f"FromRGB_lod{log2 - res}"
        return lrelu(_bias(variables, scope, conv2d(x, _weight(variables, scope, SQRT2, ws))))

    def act_conv(x, scope, op=conv2d):
        return lrelu(_bias(variables, scope, op(x, _weight(variables, scope, SQRT2, ws))))

    def block(x, res):
        scope = f"{2**res}x{2**res}"
        if res >= 3:
            x = act_conv(x, scope + "/Conv0")
            if kw["fused_scale"]:
                return act_conv(x, scope + "/Conv1_down", conv2d_downscale2d)
            return downscale2d(act_conv(x, scope + "/Conv1"))
        if kw["mbstd_group_size"] > 1:
            x = minibatch_stddev(x, kw["mbstd_group_size"])
        x = act_conv(x, scope + "/Conv")
        x = lrelu(_bias(variables, scope + "/Dense0", dense(x, _weight(variables, scope + "/Dense0", SQRT2, ws))))
        return _bias(variables, scope + "/Dense1", dense(x, _weight(variables, scope + "/Dense1", 1.0, ws)))

    def grow(res, level_lod):
        if level_lod > 0 and lod < level_lod:
            x = grow(res + 1, level_lod - 1)
        else:
            x = fromrgb(downscale2d(images, 2**level_lod), res)
        x = block(x, res)
        if res > 2 and lod > level_lod:
            return lerp(x, fromrgb(downscale2d(images, 2 ** (level_lod + 1)), res - 1), lod - level_lod)
        return x

    out = grow(2, log2 - 2)
    return out[:, :1], out[:, 1:]
