"""Inception-v3 as used for FID, KID and IS (the TF `inception-2015-12-05` graph), in Flax NNX.

The architecture is pytorch-fid's `fid_inception_v3`: torchvision's Inception3 with 1008 classes, no
auxiliary head, BasicConv = conv (no bias) + BatchNorm (eps 1e-3, running statistics) + ReLU, and the
two FID patches: the pool branch of blocks A, C and E_1 averages 3x3/s1/p1 *excluding* padding, the
pool branch of `Mixed_7c` (E_2) takes the 3x3/s1/p1 *maximum*. Module and attribute names follow the
PyTorch state dict (`Mixed_5b.branch1x1.conv.weight` -> `Mixed_5b/branch1x1/conv/kernel`), so the
weight conversion is mechanical (see `inception_weights.py`). Layout is NHWC. The input is 299x299,
preprocessed by one of the protocols of `protocols.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

NUM_CLASSES = 1008
FEATURE_DIM = 2048
BN_EPSILON = 1e-3
TAP_NAMES = ("features_64", "features_192", "features_768", "features_2048", "logits")
_PRECISION = jax.lax.Precision.HIGHEST  # metrics must not depend on TF32 defaults of accelerators


def _pairs(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


class BasicConv(nnx.Module):
    """Conv (no bias) + BatchNorm (inference, eps 1e-3) + ReLU."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int | tuple[int, int],
        *,
        rngs: nnx.Rngs,
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ):
        ph, pw = _pairs(padding)
        self.conv = nnx.Conv(
            in_ch,
            out_ch,
            _pairs(kernel),
            strides=stride,
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            precision=_PRECISION,
            rngs=rngs,
        )
        self.bn = nnx.BatchNorm(out_ch, epsilon=BN_EPSILON, use_running_average=True, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.bn(self.conv(x)))


def max_pool(x: jax.Array, stride: int, padding: int = 0) -> jax.Array:
    """3x3 max pooling, NHWC, padding with -inf."""
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)


def avg_pool_excluding_padding(x: jax.Array) -> jax.Array:
    """3x3/s1/p1 average pooling that divides by the number of real (unpadded) pixels, NHWC."""
    pad = ((0, 0), (1, 1), (1, 1), (0, 0))
    window, strides = (1, 3, 3, 1), (1, 1, 1, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
    count = jax.lax.reduce_window(jnp.ones((1, *x.shape[1:3], 1), x.dtype), 0.0, jax.lax.add, window, strides, pad)
    return total / count


class InceptionA(nnx.Module):
    """35x35 block; pool branch: average excluding padding. Out: 224 + pool_features channels."""

    def __init__(self, in_ch: int, pool_features: int, *, rngs: nnx.Rngs):
        self.branch1x1 = BasicConv(in_ch, 64, 1, rngs=rngs)
        self.branch5x5_1 = BasicConv(in_ch, 48, 1, rngs=rngs)
        self.branch5x5_2 = BasicConv(48, 64, 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv(in_ch, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv(96, 96, 3, padding=1, rngs=rngs)
        self.branch_pool = BasicConv(in_ch, pool_features, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = self.branch_pool(avg_pool_excluding_padding(x))
        return jnp.concatenate([self.branch1x1(x), b5, b3, pool], axis=-1)


class InceptionB(nnx.Module):
    """35 -> 17 reduction block. Out: 480 + in_ch channels."""

    def __init__(self, in_ch: int, *, rngs: nnx.Rngs):
        self.branch3x3 = BasicConv(in_ch, 384, 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv(in_ch, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv(96, 96, 3, stride=2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([self.branch3x3(x), b3, max_pool(x, stride=2)], axis=-1)


class InceptionC(nnx.Module):
    """17x17 block with factorised 7x7 convolutions; pool branch: average excluding padding."""

    def __init__(self, in_ch: int, channels_7x7: int, *, rngs: nnx.Rngs):
        c7 = channels_7x7
        self.branch1x1 = BasicConv(in_ch, 192, 1, rngs=rngs)
        self.branch7x7_1 = BasicConv(in_ch, c7, 1, rngs=rngs)
        self.branch7x7_2 = BasicConv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7_3 = BasicConv(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_1 = BasicConv(in_ch, c7, 1, rngs=rngs)
        self.branch7x7dbl_2 = BasicConv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_3 = BasicConv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7dbl_4 = BasicConv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_5 = BasicConv(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch_pool = BasicConv(in_ch, 192, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            b7d = layer(b7d)
        pool = self.branch_pool(avg_pool_excluding_padding(x))
        return jnp.concatenate([self.branch1x1(x), b7, b7d, pool], axis=-1)


class InceptionD(nnx.Module):
    """17 -> 8 reduction block. Out: 512 + in_ch channels."""

    def __init__(self, in_ch: int, *, rngs: nnx.Rngs):
        self.branch3x3_1 = BasicConv(in_ch, 192, 1, rngs=rngs)
        self.branch3x3_2 = BasicConv(192, 320, 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = BasicConv(in_ch, 192, 1, rngs=rngs)
        self.branch7x7x3_2 = BasicConv(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7x3_3 = BasicConv(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7x3_4 = BasicConv(192, 192, 3, stride=2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return jnp.concatenate([b3, b7, max_pool(x, stride=2)], axis=-1)


class InceptionE(nnx.Module):
    """8x8 block with split 1x3/3x1 branches. Out: 2048 channels.

    pool: 'avg' (average excluding padding, `Mixed_7b`) or 'max' (`Mixed_7c`), the FID patches.
    """

    def __init__(self, in_ch: int, pool: str, *, rngs: nnx.Rngs):
        self.pool = pool
        self.branch1x1 = BasicConv(in_ch, 320, 1, rngs=rngs)
        self.branch3x3_1 = BasicConv(in_ch, 384, 1, rngs=rngs)
        self.branch3x3_2a = BasicConv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3_2b = BasicConv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch3x3dbl_1 = BasicConv(in_ch, 448, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv(448, 384, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = BasicConv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3dbl_3b = BasicConv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch_pool = BasicConv(in_ch, 192, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3_1(x)
        b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
        b3d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = jnp.concatenate([self.branch3x3dbl_3a(b3d), self.branch3x3dbl_3b(b3d)], axis=-1)
        pooled = max_pool(x, stride=1, padding=1) if self.pool == "max" else avg_pool_excluding_padding(x)
        return jnp.concatenate([self.branch1x1(x), b3, b3d, self.branch_pool(pooled)], axis=-1)


class InceptionV3FID(nnx.Module):
    """The FID Inception-v3. Call on preprocessed float32 [N, H, W, 3] (H, W >= 75; 299 in use).

    Returns a dict of float32 arrays:
      features_64 [N, 64], features_192 [N, 192], features_768 [N, 768]: spatial means of the
        outputs of the first and second max pool and of `Mixed_6e` (pytorch-fid's dims 64/192/768);
      features_2048 [N, 2048]: `pool_3`, the FID/KID/precision-recall feature;
      logits [N, 1008]: `features_2048 @ fc.kernel` without bias (the Inception Score logits).
    """

    def __init__(self, *, rngs: nnx.Rngs):
        self.Conv2d_1a_3x3 = BasicConv(3, 32, 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = BasicConv(32, 32, 3, rngs=rngs)
        self.Conv2d_2b_3x3 = BasicConv(32, 64, 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = BasicConv(64, 80, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = BasicConv(80, 192, 3, rngs=rngs)
        self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
        self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
        self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
        self.Mixed_6a = InceptionB(288, rngs=rngs)
        self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
        self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
        self.Mixed_7a = InceptionD(768, rngs=rngs)
        self.Mixed_7b = InceptionE(1280, "avg", rngs=rngs)
        self.Mixed_7c = InceptionE(2048, "max", rngs=rngs)
        self.fc = nnx.Linear(FEATURE_DIM, NUM_CLASSES, use_bias=False, precision=_PRECISION, rngs=rngs)

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = max_pool(x, stride=2)
        taps = {"features_64": jnp.mean(x, axis=(1, 2))}
        x = max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), stride=2)
        taps["features_192"] = jnp.mean(x, axis=(1, 2))
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
        ):
            x = block(x)
        taps["features_768"] = jnp.mean(x, axis=(1, 2))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        taps["features_2048"] = jnp.mean(x, axis=(1, 2))
        taps["logits"] = self.fc(taps["features_2048"])
        return taps
