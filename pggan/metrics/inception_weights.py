"""The FID Inception weights: where the file is, converting the PyTorch state dict, the .npz cache.

The weights are pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (a port of TF's
`inception-2015-12-05`). They cannot be downloaded at run time: the user passes a local path
explicitly or through `$PGGAN_INCEPTION_WEIGHTS`. The file is read without PyTorch by
`torch_pickle.load_torch_state_dict`, converted once to our parameter tree (float32, NHWC/HWIO) and
cached as `<cache dir>/inception_fid_<sha256 prefix>.npz`, with the cache dir `$PGGAN_CACHE_DIR` or
`~/.cache/pggan`.

Parameter names: our flat names join the NNX path with '/', e.g. `Mixed_5b/branch1x1/conv/kernel`;
PyTorch names join with '.', e.g. `Mixed_5b.branch1x1.conv.weight`.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np
from flax import nnx

from pggan.metrics.errors import WeightsFileError
from pggan.metrics.inception import InceptionV3FID
from pggan.metrics.torch_pickle import load_torch_state_dict

WEIGHTS_FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               + WEIGHTS_FILE_NAME)
WEIGHTS_ENV = "PGGAN_INCEPTION_WEIGHTS"
CACHE_DIR_ENV = "PGGAN_CACHE_DIR"
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


def resolve_weights_path(path: str | os.PathLike | None = None) -> Path:
    """The weights file: `path` if given, else `$PGGAN_INCEPTION_WEIGHTS`.

    Raises:
      WeightsFileError: one line saying where to get the file and how to point at it.
    """
    chosen = path if path is not None else os.environ.get(WEIGHTS_ENV)
    if not chosen:
        raise WeightsFileError(
            f"Inception metrics (fid, kid, is, pr) need {WEIGHTS_FILE_NAME}: download it from "
            f"{WEIGHTS_URL} and pass its path (inception_weights=...) or set {WEIGHTS_ENV}")
    chosen = Path(chosen).expanduser()
    if not chosen.is_file():
        raise WeightsFileError(
            f"Inception weights file {chosen} does not exist; download {WEIGHTS_URL} "
            f"and pass its path (inception_weights=...) or set {WEIGHTS_ENV}")
    return chosen


def cache_dir() -> Path:
    """`$PGGAN_CACHE_DIR` or `~/.cache/pggan` (not created here)."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "pggan").expanduser()


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


def convert_state_dict(state_dict: dict[str, np.ndarray], source: str = "state dict"
                       ) -> dict[str, np.ndarray]:
    """PyTorch FID-Inception state dict -> our flat parameters {'a/b/kernel': float32 array}.

    Raises:
      WeightsFileError: a tensor is missing, has the wrong shape, or an unknown tensor is present.
    """
    expected = expected_state_dict_shapes()
    unknown = sorted(k for k in state_dict if k not in expected and not k.endswith(_IGNORED_SUFFIXES))
    missing = sorted(k for k in expected if k not in state_dict)
    if unknown or missing:
        raise WeightsFileError(
            f"{source} is not the FID Inception network ({len(missing)} tensors missing, e.g. "
            f"{missing[:2]}; {len(unknown)} unknown, e.g. {unknown[:2]}); use {WEIGHTS_FILE_NAME}")
    params = {}
    for path, _ in nnx.to_flat_state(abstract_inception()[1]):
        key, permutation = _torch_key(path)
        value = np.asarray(state_dict[key])
        if value.shape != expected[key]:
            raise WeightsFileError(f"{source}: tensor {key} has shape {value.shape}, "
                                   f"expected {expected[key]}; use {WEIGHTS_FILE_NAME}")
        value = value.transpose(permutation) if permutation else value
        params["/".join(map(str, path))] = np.ascontiguousarray(value, dtype=np.float32)
    return params


def inception_state(params: dict[str, np.ndarray]) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state) of `InceptionV3FID` holding the given flat parameters (host arrays)."""
    graphdef, abstract = abstract_inception()
    flat = [(path, variable.replace(params["/".join(map(str, path))]))
            for path, variable in nnx.to_flat_state(abstract)]
    return graphdef, nnx.from_flat_state(flat)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes (identifies a weights file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_inception_params(path: str | os.PathLike | None = None,
                          cache: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Flat float32 parameters of the FID Inception, converted once and cached as .npz.

    Args:
      path: the .pth file; None reads `$PGGAN_INCEPTION_WEIGHTS`.
      cache: cache directory; None uses `cache_dir()`.

    Raises:
      WeightsFileError: missing, unreadable, unsafe or wrong file (one-line message).
    """
    pth = resolve_weights_path(path)
    cache_file = Path(cache or cache_dir()) / f"inception_fid_{file_digest(pth)[:16]}.npz"
    if cache_file.is_file():
        try:
            with np.load(cache_file) as cached:
                params = {k: cached[k] for k in cached.files}
            inception_state(params)  # raises KeyError if the cache does not fit this network
            return params
        except (OSError, ValueError, KeyError):
            pass  # a damaged or stale cache is rebuilt below
    params = convert_state_dict(load_torch_state_dict(pth), str(pth))
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_suffix(".tmp.npz")
    np.savez(partial, **params)
    partial.replace(cache_file)  # atomic: concurrent processes never read half a file
    return params
