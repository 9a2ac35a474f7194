"""The FID Inception weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` and its conversion.

The file (a port of TF's `inception-2015-12-05`) is found, read and cached by `weights_files` with
`INCEPTION_WEIGHTS`: a local path passed explicitly or through `$PGGAN_INCEPTION_WEIGHTS`.

Parameter names: our flat names join the NNX path with '/', e.g. `Mixed_5b/branch1x1/conv/kernel`;
PyTorch names join with '.', e.g. `Mixed_5b.branch1x1.conv.weight`.
"""

from __future__ import annotations

import functools

import numpy as np
from flax import nnx

from pggan.metrics.inception import InceptionV3FID
from pggan.metrics.weights_files import WeightsSpec, check_state_dict

WEIGHTS_FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE_NAME
WEIGHTS_ENV = "PGGAN_INCEPTION_WEIGHTS"
# Our leaf name -> (PyTorch leaf name, axes permutation from the PyTorch layout to ours).
_LEAF_MAP = {
    ("conv", "kernel"): ("conv.weight", (2, 3, 1, 0)),  # [O, I, kh, kw] -> [kh, kw, I, O]
    ("bn", "scale"): ("bn.weight", None),
    ("bn", "bias"): ("bn.bias", None),
    ("bn", "mean"): ("bn.running_mean", None),
    ("bn", "var"): ("bn.running_var", None),
    ("fc", "kernel"): ("fc.weight", (1, 0)),  # [1008, 2048] -> [2048, 1008]
}
_IGNORED_SUFFIXES = ("num_batches_tracked", "fc.bias")  # unused: BN counters, the IS bias


@functools.cache
def abstract_inception() -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, abstract state) of `InceptionV3FID`; shapes only, no memory (built once)."""
    return nnx.split(nnx.eval_shape(lambda: InceptionV3FID(rngs=nnx.Rngs(0))))


def _torch_key(path: tuple) -> tuple[str, tuple[int, ...] | None]:
    """Our NNX path -> (PyTorch state-dict key, permutation from PyTorch's layout to ours)."""
    leaf, permutation = _LEAF_MAP[tuple(path[-2:])]
    return ".".join([*map(str, path[:-2]), leaf]), permutation


def expected_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """PyTorch key -> shape of every tensor the conversion needs (pytorch-fid's names)."""
    shapes = {}
    for path, variable in nnx.to_flat_state(abstract_inception()[1]):
        key, permutation = _torch_key(path)
        shape = tuple(variable.shape)
        shapes[key] = tuple(shape[i] for i in np.argsort(permutation)) if permutation else shape
    return shapes


def convert_state_dict(state_dict: dict[str, np.ndarray], source: str = "state dict") -> dict[str, np.ndarray]:
    """PyTorch FID-Inception state dict -> our flat parameters {'a/b/kernel': float32 array}.

    Raises:
      WeightsFileError: a tensor is missing, has the wrong shape, or an unknown tensor is present.
    """
    check_state_dict(
        state_dict, expected_state_dict_shapes(), _IGNORED_SUFFIXES, source, "FID Inception", WEIGHTS_FILE_NAME
    )
    params = {}
    for path, _ in nnx.to_flat_state(abstract_inception()[1]):
        key, permutation = _torch_key(path)
        value = np.asarray(state_dict[key])
        value = value.transpose(permutation) if permutation else value
        params["/".join(map(str, path))] = np.ascontiguousarray(value, dtype=np.float32)
    return params


def inception_state(params: dict[str, np.ndarray]) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state) of `InceptionV3FID` holding the given flat parameters (host arrays)."""
    graphdef, abstract = abstract_inception()
    flat = [
        (path, variable.replace(params["/".join(map(str, path))])) for path, variable in nnx.to_flat_state(abstract)
    ]
    return graphdef, nnx.from_flat_state(flat)


INCEPTION_WEIGHTS = WeightsSpec(
    network="Inception",
    file_name=WEIGHTS_FILE_NAME,
    url=WEIGHTS_URL,
    env=WEIGHTS_ENV,
    option="inception_weights",
    metrics="Inception metrics (fid, kid, is, pr_inception)",
    cache_prefix="inception_fid",
    convert=convert_state_dict,
    check=inception_state,
)
