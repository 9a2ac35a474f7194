"""Feature-network weights files: where the file is, its conversion from a PyTorch state dict, the .npz cache.

Weights cannot be downloaded at run time: the user passes a local path explicitly or through an
environment variable. The file is read without PyTorch by `torch_pickle.load_torch_state_dict`,
converted once to our flat parameters ({'a/b/kernel': float32 array}, NHWC/HWIO layouts) and cached
as `<cache dir>/<prefix>_<sha256 prefix>.npz`, with the cache dir `$PGGAN_CACHE_DIR` or
`~/.cache/pggan`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pggan.metrics.errors import WeightsFileError
from pggan.metrics.torch_pickle import load_torch_state_dict

CACHE_DIR_ENV = "PGGAN_CACHE_DIR"


@dataclasses.dataclass(frozen=True)
class WeightsSpec:
    """One network's weights file.

    network: name in messages; file_name, url: the released file; env: environment variable of its
    path; option: the setting that passes the path (in messages); metrics: the metrics needing it;
    cache_prefix: name of the converted cache files; convert: PyTorch state dict (and the file name
    for messages) -> flat float32 parameters, raising WeightsFileError for another network;
    check: raises KeyError or ValueError when cached parameters do not fit the network.
    """

    network: str
    file_name: str
    url: str
    env: str
    option: str
    metrics: str
    cache_prefix: str
    convert: Callable[[dict[str, np.ndarray], str], dict[str, np.ndarray]]
    check: Callable[[dict[str, np.ndarray]], object]


def cache_dir() -> Path:
    """`$PGGAN_CACHE_DIR` or `~/.cache/pggan` (not created here)."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "pggan").expanduser()


def resolve_weights_path(spec: WeightsSpec, path: str | os.PathLike | None = None) -> Path:
    """The weights file: `path` if given, else the spec's environment variable.

    Raises:
      WeightsFileError: one line saying where to get the file and how to point at it.
    """
    chosen = path if path is not None else os.environ.get(spec.env)
    if not chosen:
        raise WeightsFileError(
            f"{spec.metrics} need {spec.file_name}: download it from {spec.url} and pass its "
            f"path ({spec.option}=...) or set {spec.env}"
        )
    chosen = Path(chosen).expanduser()
    if not chosen.is_file():
        raise WeightsFileError(
            f"{spec.network} weights file {chosen} does not exist; download {spec.url} and pass "
            f"its path ({spec.option}=...) or set {spec.env}"
        )
    return chosen


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes (identifies a weights file); computed once per file version."""
    stat = os.stat(path)
    return _digest(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key: a rewritten file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_state_dict(
    state_dict: dict[str, np.ndarray],
    expected: dict[str, tuple[int, ...]],
    ignored_suffixes: tuple[str, ...],
    source: str,
    network: str,
    file_name: str,
) -> None:
    """Raises WeightsFileError unless `state_dict` holds exactly the `expected` tensor shapes.

    Tensors whose names end with one of `ignored_suffixes` may be present or not; `network` and
    `file_name` name the expected network and its file in the message.
    """
    unknown = sorted(k for k in state_dict if k not in expected and not k.endswith(ignored_suffixes))
    missing = sorted(k for k in expected if k not in state_dict)
    if unknown or missing:
        raise WeightsFileError(
            f"{source} is not the {network} network ({len(missing)} tensors missing, e.g. {missing[:2]}; "
            f"{len(unknown)} unknown, e.g. {unknown[:2]}); use {file_name}"
        )
    for key, shape in expected.items():
        if np.shape(state_dict[key]) != shape:
            raise WeightsFileError(
                f"{source}: tensor {key} has shape {np.shape(state_dict[key])}, expected {shape}; use {file_name}"
            )


def load_params(
    spec: WeightsSpec, path: str | os.PathLike | None = None, cache: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """Flat float32 parameters of the spec's network, converted once and cached as .npz.

    Args:
      path: the .pth file; None reads the spec's environment variable.
      cache: cache directory; None uses `cache_dir()`.

    Raises:
      WeightsFileError: missing, unreadable, unsafe or wrong file (one-line message).
    """
    pth = resolve_weights_path(spec, path)
    cache_file = Path(cache or cache_dir()) / f"{spec.cache_prefix}_{file_digest(pth)[:16]}.npz"
    if cache_file.is_file():
        try:
            with np.load(cache_file) as cached:
                params = {k: cached[k] for k in cached.files}
            spec.check(params)
            return params
        except (OSError, ValueError, KeyError):
            pass  # a damaged or stale cache is rebuilt below
    params = spec.convert(load_torch_state_dict(pth), str(pth))
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(partial, **params)
    partial.replace(cache_file)  # atomic: concurrent processes never read half a file
    return params
