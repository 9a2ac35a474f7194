"""The VGG16 weights of the precision/recall features: torchvision's `vgg16-397923af.pth` and its conversion.

The file (torchvision's ImageNet weights `VGG16_Weights.IMAGENET1K_V1`, 528 MB, a pre-1.6 torch
file) is found, read and cached by `weights_files` with `VGG16_WEIGHTS`: a local path passed
explicitly or through `$PGGAN_VGG16_WEIGHTS`. StyleGAN2-ADA's TorchScript `vgg16.pt` is not read: a
TorchScript archive is code, and torchvision's file gives the same features (see `vgg16.py`).

Names: torchvision's `features.<i>.weight` (i = 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
become our `conv<stage>_<n>/kernel` ([O, I, 3, 3] -> [3, 3, I, O]); `classifier.0` becomes `fc1`
(columns reordered from (C, H, W) to (H, W, C), transposed) and `classifier.3` becomes `fc2`
(transposed); `classifier.6` (the 1000 ImageNet classes) is not used.
"""

from __future__ import annotations

import functools

import numpy as np
from flax import nnx

from pggan.metrics.vgg16 import FEATURE_DIM, POOLED_SIDE, STAGES, VGG16Features, conv_names
from pggan.metrics.weights_files import WeightsSpec, check_state_dict

WEIGHTS_FILE_NAME = "vgg16-397923af.pth"
WEIGHTS_URL = "https://download.pytorch.org/models/" + WEIGHTS_FILE_NAME
WEIGHTS_ENV = "PGGAN_VGG16_WEIGHTS"
_TORCH_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_IGNORED_SUFFIXES = ("classifier.6.weight", "classifier.6.bias")


@functools.cache
def abstract_vgg16() -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, abstract state) of `VGG16Features`; shapes only, no memory (built once)."""
    return nnx.split(nnx.eval_shape(lambda: VGG16Features(rngs=nnx.Rngs(0))))


def _fc1_from_torch(weight: np.ndarray) -> np.ndarray:
    """torchvision's classifier.0.weight [4096, C*7*7] in (C, H, W) order -> our [7*7*C, 4096] in (H, W, C)."""
    channels = weight.shape[1] // (POOLED_SIDE * POOLED_SIDE)
    grid = weight.reshape(FEATURE_DIM, channels, POOLED_SIDE, POOLED_SIDE)
    return grid.transpose(2, 3, 1, 0).reshape(-1, FEATURE_DIM)


def _torch_names() -> dict[str, tuple[str, object]]:
    """Our flat name -> (torchvision key, conversion from the torch array to ours)."""
    table = {}
    for name, index in zip(conv_names(), _TORCH_CONV_INDICES):
        table[f"{name}/kernel"] = (f"features.{index}.weight", lambda w: w.transpose(2, 3, 1, 0))
        table[f"{name}/bias"] = (f"features.{index}.bias", None)
    table["fc1/kernel"] = ("classifier.0.weight", _fc1_from_torch)
    table["fc1/bias"] = ("classifier.0.bias", None)
    table["fc2/kernel"] = ("classifier.3.weight", np.transpose)
    table["fc2/bias"] = ("classifier.3.bias", None)
    return table


def expected_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """torchvision key -> shape of every tensor the conversion needs."""
    shapes, in_ch, indices = {}, 3, iter(_TORCH_CONV_INDICES)
    for widths in STAGES:
        for out_ch in widths:
            index = next(indices)
            shapes[f"features.{index}.weight"], shapes[f"features.{index}.bias"] = (out_ch, in_ch, 3, 3), (out_ch,)
            in_ch = out_ch
    shapes["classifier.0.weight"] = (FEATURE_DIM, in_ch * POOLED_SIDE * POOLED_SIDE)
    shapes["classifier.0.bias"] = (FEATURE_DIM,)
    shapes["classifier.3.weight"], shapes["classifier.3.bias"] = (FEATURE_DIM, FEATURE_DIM), (FEATURE_DIM,)
    return shapes


def convert_state_dict(state_dict: dict[str, np.ndarray], source: str = "state dict") -> dict[str, np.ndarray]:
    """torchvision VGG16 state dict -> our flat parameters {'conv1_1/kernel': float32 array, ...}.

    Raises:
      WeightsFileError: a tensor is missing, has the wrong shape, or an unknown tensor is present.
    """
    check_state_dict(
        state_dict, expected_state_dict_shapes(), _IGNORED_SUFFIXES, source, "torchvision VGG16", WEIGHTS_FILE_NAME
    )
    params = {}
    for name, (key, convert) in _torch_names().items():
        value = np.asarray(state_dict[key], np.float32)
        params[name] = np.ascontiguousarray(convert(value) if convert else value)
    return params


def vgg16_state(params: dict[str, np.ndarray]) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state) of `VGG16Features` holding the given flat parameters (host arrays)."""
    graphdef, abstract = abstract_vgg16()
    flat = [
        (path, variable.replace(params["/".join(map(str, path))])) for path, variable in nnx.to_flat_state(abstract)
    ]
    return graphdef, nnx.from_flat_state(flat)


VGG16_WEIGHTS = WeightsSpec(
    network="VGG16",
    file_name=WEIGHTS_FILE_NAME,
    url=WEIGHTS_URL,
    env=WEIGHTS_ENV,
    option="vgg16_weights",
    metrics="pr_vgg16 (precision/recall on VGG16 features)",
    cache_prefix="vgg16",
    convert=convert_state_dict,
    check=vgg16_state,
)
