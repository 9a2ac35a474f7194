"""VGG16 (torchvision's `vgg16`, configuration D) up to the second fully connected layer, in Flax NNX.

The precision/recall features of Kynkaanniemi et al. as StyleGAN2-ADA computes them (`vgg16.pt`,
whose features equal torchvision's VGG16 with the ImageNet weights `vgg16-397923af.pth` after the
`protocols.VGG16_PROTOCOL` preprocessing, per torch-fidelity's test of the two): 13 conv 3x3 (pad 1,
bias) + ReLU layers in five stages of (64, 64), (128, 128), (256, 256, 256), (512, 512, 512),
(512, 512, 512) channels, each stage followed by 2x2/s2 max pooling; then `fc1` 25088 -> 4096 +
ReLU and `fc2` 4096 -> 4096 + ReLU (dropout is the identity at inference; the 1000-class layer is
not used). Layout is NHWC; the input is 224x224, so the last stage gives 7x7x512 and torchvision's
adaptive 7x7 average pool is the identity. `fc1` reads the 7x7x512 map flattened in (H, W, C) order;
the weight conversion (`vgg16_weights.py`) reorders torchvision's (C, H, W) columns accordingly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
FEATURE_DIM = 4096
POOLED_SIDE = 7
_PRECISION = jax.lax.Precision.HIGHEST  # metrics must not depend on TF32 defaults of accelerators


def conv_names() -> list[str]:
    """Attribute names of the 13 convolutions in order: conv1_1, conv1_2, conv2_1, ..., conv5_3."""
    return [f"conv{s + 1}_{i + 1}" for s, widths in enumerate(STAGES) for i in range(len(widths))]


class VGG16Features(nnx.Module):
    """VGG16 fc2 features. Call on preprocessed float32 [N, 224, 224, 3]; returns {'fc2_relu': float32 [N, 4096]},
    values >= 0."""

    def __init__(self, *, rngs: nnx.Rngs):
        names, in_ch = iter(conv_names()), 3
        for widths in STAGES:
            for out_ch in widths:
                setattr(
                    self,
                    next(names),
                    nnx.Conv(in_ch, out_ch, (3, 3), padding=((1, 1), (1, 1)), precision=_PRECISION, rngs=rngs),
                )
                in_ch = out_ch
        self.fc1 = nnx.Linear(POOLED_SIDE * POOLED_SIDE * in_ch, FEATURE_DIM, precision=_PRECISION, rngs=rngs)
        self.fc2 = nnx.Linear(FEATURE_DIM, FEATURE_DIM, precision=_PRECISION, rngs=rngs)

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        names = iter(conv_names())
        for widths in STAGES:
            for _ in widths:
                x = jax.nn.relu(getattr(self, next(names))(x))
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        x = jax.nn.relu(self.fc1(x.reshape(x.shape[0], -1)))
        return {"fc2_relu": jax.nn.relu(self.fc2(x))}
