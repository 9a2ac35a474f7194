"""Reads PyTorch `torch.save` state dicts (tensors by name) without PyTorch and without running code.

Both formats are read: the zip archive of torch >= 1.6 (`<name>/data.pkl` plus one raw file per
storage, `<name>/data/<key>`) and the older sequential format (magic number, protocol, system info,
the object pickle, the storage keys, then each storage as an int64 element count and raw bytes).

The object pickle is read by a restricted unpickler that admits only what a state dict of tensors
needs: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and its predecessor
`_rebuild_tensor` (both replaced by a NumPy stand-in)
and the `torch.<Type>Storage` markers reached through persistent ids. Any other global
(`os.system`, `builtins.eval`, ...) raises `UnsafeWeightsFileError` before anything is called.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np

from pggan.metrics.errors import UnsafeWeightsFileError, WeightsFileError

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype(np.float32), "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16), "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64), "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16), "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8), "BoolStorage": np.dtype(np.bool_),
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageType:
    """Stand-in for a `torch.<Type>Storage` class: only carries the element dtype."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False,
                    backward_hooks=None, metadata=None):
    """NumPy stand-in for `torch._utils._rebuild_tensor_v2`: a strided view into the storage."""
    del requires_grad, backward_hooks, metadata  # autograd details that arrays do not have
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise WeightsFileError("tensor without a storage in the weights file")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if any(s < 0 for s in size + stride) or len(size) != len(stride):
        raise WeightsFileError(f"invalid tensor layout size={size} stride={stride}")
    last = int(storage_offset) + sum((n - 1) * s for n, s in zip(size, stride) if n > 0)
    if min(size, default=1) > 0 and last >= storage.size:
        raise WeightsFileError("tensor reaches past the end of its storage: truncated weights file?")
    item = storage.itemsize
    return np.lib.stride_tricks.as_strided(storage[int(storage_offset):], size,
                                           tuple(s * item for s in stride), writeable=False)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals of a tensor state dict; storages come from a callback."""

    def __init__(self, data: bytes | io.BytesIO, source: str, load_storage=None):
        super().__init__(io.BytesIO(data) if isinstance(data, bytes) else data)
        self._source = source
        self._load_storage = load_storage

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _rebuild_tensor  # the first is written by torch < 0.4 (e.g. vgg16-397923af.pth)
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise UnsafeWeightsFileError(
            f"{self._source}: refusing global '{module}.{name}': a weights file may only hold "
            "tensors; nothing was run. Use the original file from the official release")

    def persistent_load(self, pid):
        if (self._load_storage is None or not isinstance(pid, tuple) or len(pid) < 5
                or pid[0] != "storage" or not isinstance(pid[1], _StorageType)):
            raise UnsafeWeightsFileError(f"{self._source}: unexpected persistent id {pid!r:.80}")
        storage = self._load_storage(str(pid[2]), pid[1].dtype, int(pid[4]))
        view = pid[5] if len(pid) > 5 else None  # legacy format: (view_key, offset, numel)
        if view is not None:
            _, offset, numel = view
            storage = storage[int(offset):int(offset) + int(numel)]
        return storage


def _as_state_dict(obj, source: str) -> dict[str, np.ndarray]:
    """Checks the unpickled object is {name: tensor} and returns owned, contiguous copies."""
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray)
                                            for k, v in obj.items()):
        raise WeightsFileError(f"{source}: expected a state dict of tensors, got {type(obj).__name__}")
    return {k: np.array(v) for k, v in obj.items()}


def _read_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise WeightsFileError(f"{path}: a torch zip archive has exactly one <name>/data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        names = set(archive.namelist())
        big_endian = (f"{prefix}byteorder" in names
                      and archive.read(f"{prefix}byteorder").strip() == b"big")

        def load_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
            member = f"{prefix}data/{key}"
            if member not in names:
                raise WeightsFileError(f"{path}: storage '{key}' is missing from the archive")
            raw = np.frombuffer(archive.read(member), dtype.newbyteorder(">" if big_endian else "<"))
            if raw.size < numel:
                raise WeightsFileError(f"{path}: storage '{key}' is truncated")
            return raw[:numel].astype(dtype)

        obj = _RestrictedUnpickler(archive.read(pickles[0]), str(path), load_storage).load()
        return _as_state_dict(obj, str(path))


def _read_legacy(path: Path) -> dict[str, np.ndarray]:
    stream = io.BytesIO(path.read_bytes())
    header = [_RestrictedUnpickler(stream, str(path)).load() for _ in range(3)]
    if header[0] != _LEGACY_MAGIC or header[1] != _LEGACY_PROTOCOL:
        raise WeightsFileError(f"{path}: not a PyTorch weights file (bad magic number)")
    if isinstance(header[2], dict) and not header[2].get("little_endian", True):
        raise WeightsFileError(f"{path}: big-endian legacy weights files are not supported")
    storages: dict[str, np.ndarray] = {}

    def load_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        return storages.setdefault(key, np.empty(numel, dtype))  # filled after the object pickle

    obj = _RestrictedUnpickler(stream, str(path), load_storage).load()
    keys = [str(k) for k in _RestrictedUnpickler(stream, str(path)).load()]
    if sorted(keys) != sorted(storages):
        raise WeightsFileError(f"{path}: the storage list does not match the tensors")
    for key in keys:
        storage = storages[key]
        (numel,) = struct.unpack("<q", stream.read(8))
        raw = stream.read(numel * storage.itemsize)
        if numel != storage.size or len(raw) != storage.nbytes:
            raise WeightsFileError(f"{path}: storage '{key}' is truncated or has the wrong size")
        storage[:] = np.frombuffer(raw, storage.dtype)
    return _as_state_dict(obj, str(path))


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a `torch.save`d state dict: {name: array} (float32 tensors come back float32).

    Raises:
      WeightsFileError: missing, truncated or not a PyTorch state dict file.
      UnsafeWeightsFileError: the pickle asks for anything but tensors (nothing is executed).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file {path} does not exist")
    try:
        return _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except WeightsFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, MemoryError, struct.error, zipfile.BadZipFile) as e:
        raise WeightsFileError(f"{path}: unreadable PyTorch weights file ({type(e).__name__}: {e})") from None
