"""Feature protocols: how uint8 images become the input of the feature network, as each published tool does it.

A protocol is: divide the uint8 values (0..255) by `divisor`, resize to `size` x `size` with `resize`
(see `resize.py`), clip to `clip` if set, then `(x - mean) / std` per channel. The Inception
protocols (FID, KID, IS, pr_inception) differ only in these steps; the network and its weights are
the same (the TF `inception-2015-12-05` graph):

  tf1          TF1 bilinear resize of 0..255 values to 299, (x - 128) / 128 -> [-1, 127/128].
               The TF FID code (TTUR), StyleGAN 1/2/2-ADA/3 (`fid50k_full`), torch-fidelity, and
               clean-fid's mode='legacy_tensorflow'.
  pytorch_fid  x / 255 (torchvision `to_tensor`), PyTorch bilinear resize to 299 (align_corners=False,
               no antialias), 2x - 1 -> [-1, 1]. The `python -m pytorch_fid` command (v0.3.0: images
               decoded by PIL and converted to RGB at their own size, resized inside `InceptionV3`).
  clean        Pillow bicubic resize (antialiased) of each channel as a float32 image of 0..255 values
               to 299, clipped to [0, 255], (x - 128) / 128. clean-fid's default mode='clean'.

`VGG16_PROTOCOL` is the fixed preprocessing of the VGG16 precision/recall features of StyleGAN2-ADA
(`vgg16.pt`) and torch-fidelity: TF1 bilinear resize of 0..255 values to 224, then ImageNet
normalisation `(x - 255 * mean) / (255 * std)`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from pggan.metrics.errors import MetricInputError
from pggan.metrics.resize import RESIZE_METHODS, resample

INCEPTION_SIZE = 299
VGG16_SIZE = 224
DEFAULT_PROTOCOL = "tf1"


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One preprocessing recipe (see the module docstring).

    name: the protocol's name; network: 'inception' or 'vgg16'; size: network input side;
    resize: one of `resize.RESIZE_METHODS`; divisor: the uint8 values are divided by it before resizing;
    clip: (low, high) applied after resizing, or None; mean, std: per-channel normalisation;
    summary: one line for help texts and records.
    """

    name: str
    network: str
    size: int
    resize: str
    divisor: float
    clip: tuple[float, float] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    summary: str

    def __post_init__(self):
        assert self.resize in RESIZE_METHODS, self.resize

    def preprocess(self, images: jax.Array) -> jax.Array:
        """uint8 [N, H, W, 3] (0..255) -> float32 [N, size, size, 3], the network input. Traceable."""
        x = images.astype(jnp.float32)
        if self.divisor != 1:
            x = x / jnp.float32(self.divisor)  # a true division, as torchvision's to_tensor does
        x = resample(x, self.size, self.size, self.resize)
        if self.clip is not None:
            x = jnp.clip(x, *self.clip)
        return (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)


PROTOCOLS = {
    p.name: p
    for p in (
        Protocol(
            "tf1",
            "inception",
            INCEPTION_SIZE,
            "tf1_bilinear",
            1.0,
            None,
            (128.0,) * 3,
            (128.0,) * 3,
            "TF1 bilinear resize of 0..255 to 299, (x-128)/128: TF FID, StyleGAN, torch-fidelity, "
            "clean-fid legacy_tensorflow",
        ),
        Protocol(
            "pytorch_fid",
            "inception",
            INCEPTION_SIZE,
            "torch_bilinear",
            255.0,
            None,
            (0.5,) * 3,
            (0.5,) * 3,
            "x/255, PyTorch bilinear resize to 299 (align_corners=False), 2x-1: the pytorch_fid command",
        ),
        Protocol(
            "clean",
            "inception",
            INCEPTION_SIZE,
            "pil_bicubic",
            1.0,
            (0.0, 255.0),
            (128.0,) * 3,
            (128.0,) * 3,
            "Pillow bicubic resize of float 0..255 to 299, clip, (x-128)/128: clean-fid mode='clean'",
        ),
    )
}

VGG16_PROTOCOL = Protocol(
    "vgg16_tf1",
    "vgg16",
    VGG16_SIZE,
    "tf1_bilinear",
    1.0,
    None,
    (255 * 0.485, 255 * 0.456, 255 * 0.406),
    (255 * 0.229, 255 * 0.224, 255 * 0.225),
    "TF1 bilinear resize of 0..255 to 224, ImageNet mean/std: StyleGAN2-ADA vgg16.pt, torch-fidelity",
)


def inception_protocol(name: str) -> Protocol:
    """The Inception protocol called `name`; MetricInputError listing the choices otherwise."""
    if name not in PROTOCOLS:
        raise MetricInputError(f"unknown protocol {name!r}; choose among {','.join(PROTOCOLS)}")
    return PROTOCOLS[name]
