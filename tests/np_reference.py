"""Independent NumPy (float64) re-derivation of the PGGAN layers and networks, for tests.

Written from the paper/official semantics with explicit loops where that makes the meaning plain
(minibatch-stddev groups, convolution taps), and deliberately sharing no code with `pggan`.
All arrays are NHWC; kernels HWIO.
"""

import math

import numpy as np

SQRT2 = math.sqrt(2.0)


def lrelu(x):
    return np.where(x >= 0, x, 0.2 * x)


def pixel_norm(x, eps=1e-8):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def conv2d_same(x, w):
    """Zero-padded 'SAME' cross-correlation, stride 1, odd kernel: explicit sum over taps."""
    k = w.shape[0]
    p = k // 2
    n, h, wd, _ = x.shape
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    out = np.zeros((n, h, wd, w.shape[3]))
    for dy in range(k):
        for dx in range(k):
            out += np.einsum("nhwc,co->nhwo", xp[:, dy : dy + h, dx : dx + wd, :], w[dy, dx])
    return out


def upsample(x):
    return x.repeat(2, axis=1).repeat(2, axis=2)


def downsample(x):
    n, h, w, c = x.shape
    out = np.zeros((n, h // 2, w // 2, c))
    for dy in range(2):
        for dx in range(2):
            out += x[:, dy::2, dx::2, :]
    return out / 4.0


def minibatch_stddev(x, group_size=4):
    """Sample n shares statistics with every m where m % (N / G) == n % (N / G)."""
    n = x.shape[0]
    g = min(group_size, n)
    m = n // g
    feature = np.zeros(n)
    for i in range(n):
        members = [j for j in range(n) if j % m == i % m]
        assert len(members) == g
        group = x[members]
        std = np.sqrt(np.mean((group - group.mean(axis=0)) ** 2, axis=0) + 1e-8)
        feature[i] = std.mean()
    tiled = np.broadcast_to(feature[:, None, None, None], x.shape[:3] + (1,))
    return np.concatenate([x, tiled], axis=-1)


def lerp(a, b, t):
    return a + (b - a) * t


def he_scale(kernel, gain=SQRT2):
    return gain / math.sqrt(np.prod(kernel.shape[:-1]))


def dense(x, p, gain=SQRT2):
    x = x.reshape(x.shape[0], -1)
    return x @ (p["kernel"] * he_scale(p["kernel"], gain)) + p["bias"]


def conv(x, p, gain=SQRT2):
    return conv2d_same(x, p["kernel"] * he_scale(p["kernel"], gain)) + p["bias"]


def conv_pool_act(x, p):
    """Official TF order: conv -> 2x2 average pool -> bias -> lrelu."""
    w = p["kernel"] * he_scale(p["kernel"])
    return lrelu(downsample(conv2d_same(x, w)) + p["bias"])


def generator(params, z, resolution, alpha):
    """Official G_paper on NHWC arrays. params: nested dict as `nnx.state(G).to_pure_dict()`."""
    level = int(math.log2(resolution)) - 2
    b0 = params["blocks"][0]
    x = pixel_norm(z)
    w = b0["dense"]["kernel"]
    x = (x @ (w * he_scale(w, SQRT2 / 4))).reshape(z.shape[0], 4, 4, -1) + b0["dense"]["bias"]  # bias per channel
    x = pixel_norm(lrelu(x))
    x = pixel_norm(lrelu(conv(x, b0["conv"])))
    prev = x
    for i in range(1, level + 1):
        b = params["blocks"][i]
        prev = x
        x = pixel_norm(lrelu(conv(upsample(x), b["conv0"])))
        x = pixel_norm(lrelu(conv(x, b["conv1"])))
    img = conv(x, params["to_rgb"][level], gain=1.0)
    if level > 0:
        old = upsample(conv(prev, params["to_rgb"][level - 1], gain=1.0))
        img = lerp(img, old, 1.0 - alpha)
    return img


def discriminator(params, images, resolution, alpha, order="conv_pool_act"):
    """Official D_paper (fused_scale order by default) on NHWC arrays."""
    level = int(math.log2(resolution)) - 2

    def from_rgb(lvl, img):
        return lrelu(conv(img, params["from_rgb"][lvl]))

    def block(i, x):
        b = params["blocks"][i]
        if i == 0:
            x = minibatch_stddev(x)
            x = lrelu(conv(x, b["conv"]))
            x = lrelu(dense(x, b["dense0"]))
            return dense(x, b["dense1"], gain=1.0)
        x = lrelu(conv(x, b["conv0"]))
        if order == "conv_pool_act":
            return conv_pool_act(x, b["conv1"])
        return downsample(lrelu(conv(x, b["conv1"])))

    x = block(level, from_rgb(level, images))
    if level > 0:
        x = lerp(x, from_rgb(level - 1, downsample(images)), 1.0 - alpha)
        for i in range(level - 1, -1, -1):
            x = block(i, x)
    return x
