"""Reads PyTorch `torch.save` state dicts (tensors by name) without PyTorch and without running code.

Both formats are read: the zip archive of torch >= 1.6 (`<name>/data.pkl` plus one raw file per
storage, `<name>/data/<key>`) and the older sequential format (magic number, protocol, system info,
the object pickle, the storage keys, then each storage as an int64 element count and raw bytes).

The object pickle is read by a restricted unpickler that admits only what a state dict of tensors
needs: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and its predecessor
`_rebuild_tensor` (both replaced by a NumPy stand-in)
and the `torch.<Type>Storage` markers reached through persistent ids. Any other global
(`os.system`, `builtins.eval`, ...) raises `UnsafeWeightsFileError` before anything is called.

Nothing the file declares is allocated or viewed unchecked:
- every pickle's opcodes first (`safe_unpickling.check_opcodes`): no bytes, str or memo index beyond
  the file, no opcode straddling a frame's end;
- zip entries are stored uncompressed (as torch.save writes them), unencrypted and inside the file,
  and together the entries read hold at most the file's size;
- a storage's declared element count is a non-negative int that its zip entry (or, in the sequential
  format, the rest of the file) holds, and a storage shared by several tensors always has one type and
  size;
- a tensor's offset, sizes and strides are non-negative ints (torch writes no negative stride), and
  every element it reaches, from its offset to offset + sum((size - 1) x stride), lies inside its
  storage; zero-size tensors reach nothing;
- the tensors together hold at most the file's size (so that expanded or shared views cannot
  multiply it when they are copied out).
"""

from __future__ import annotations

import collections
import io
import struct
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np

from pggan.metrics.errors import UnsafeWeightsFileError, WeightsFileError
from pggan.safe_unpickling import (
    PARSE_ERRORS,
    BoundedUnpickler,
    ByteBudget,
    MalformedFileError,
    bounded_int,
    element_count,
    one_line,
    reason,
)

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _Sealed:
    """Base of the stand-ins that a pickle may hold but not change: their state cannot be set (BUILD)."""

    __slots__ = ()

    def __setstate__(self, state):
        raise MalformedFileError(f"the pickle sets the state of a {type(self).__name__}")


class _StorageType(_Sealed):
    """Stand-in for a `torch.<Type>Storage` class: only carries the element dtype."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype


class _Storage(_Sealed):
    """A storage read from the file (what a persistent id loads): `array`, 1-D and contiguous."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array


def _tensor_view(storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> np.ndarray:
    """The strided view of `storage` (1-D) that a tensor is, once every element it reaches is inside it."""
    if 0 in size:
        return np.empty(size, storage.dtype)  # reaches no element
    stride = tuple(s if n > 1 else 0 for n, s in zip(size, stride))  # a stride along a size-1 axis is unused
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise MalformedFileError(f"a tensor reaches element {last} of a {storage.size}-element storage")
    return np.lib.stride_tricks.as_strided(
        storage[offset:], size, tuple(s * storage.itemsize for s in stride), writeable=False
    )


class _RestrictedUnpickler(BoundedUnpickler):
    """Unpickler that resolves only the globals of a tensor state dict; storages come from a callback.

    Reads the pickle at `stream`'s position in a `file_size`-byte file; the tensors together hold at most
    `file_size` bytes. `load_storage(key, dtype, numel)` returns a 1-D storage array; None (the header
    pickles of the sequential format) refuses persistent ids.
    """

    def __init__(self, stream: io.BytesIO, source: str, file_size: int, load_storage=None):
        super().__init__(stream, file_size)
        self._source = source
        self._load_storage = load_storage

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return self._rebuild_tensor  # the second is written by torch < 0.4 (e.g. vgg16-397923af.pth)
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise UnsafeWeightsFileError(
            f"{self._source}: refusing global '{one_line(f'{module}.{name}', 100)}': a weights file may only "
            "hold tensors; nothing was run. Use the original file from the official release"
        )

    def persistent_load(self, pid) -> _Storage:
        """('storage', storage type, key, location, numel[, (view key, offset, numel)]) -> the storage."""
        if (
            self._load_storage is None
            or not isinstance(pid, tuple)
            or len(pid) not in (5, 6)
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
            or not isinstance(pid[2], str)
        ):
            raise UnsafeWeightsFileError(
                f"{self._source}: unexpected persistent id (a {type(pid).__name__}); "
                f"a weights file may only hold tensors"
            )
        dtype = pid[1].dtype
        storage = self._load_storage(
            pid[2], dtype, bounded_int(pid[4], "storage size", self.budget.file_size // dtype.itemsize)
        )
        view = pid[5] if len(pid) > 5 else None  # sequential format: (view key, offset, numel)
        if view is None:
            return _Storage(storage)
        if not (isinstance(view, tuple) and len(view) == 3):
            raise MalformedFileError("a storage view is not (key, offset, size)")
        offset = bounded_int(view[1], "storage view offset", storage.size)
        return _Storage(storage[offset : offset + bounded_int(view[2], "storage view size", storage.size - offset)])

    def _rebuild_tensor(
        self, storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
    ):
        """NumPy stand-in for `torch._utils._rebuild_tensor_v2` (and `_rebuild_tensor` of torch < 0.4, which
        takes the first four arguments): a read-only strided view into the storage."""
        del requires_grad, backward_hooks, metadata  # autograd details that arrays do not have
        if not isinstance(storage, _Storage):
            raise MalformedFileError("a tensor without a storage")
        storage = storage.array
        offset = bounded_int(storage_offset, "storage offset", storage.size)
        numel = element_count(size, self.budget.file_size)
        if not isinstance(stride, tuple) or len(stride) != len(size):
            raise MalformedFileError("a tensor's strides do not match its sizes")
        stride = tuple(bounded_int(s, "stride", self.budget.file_size) for s in stride)
        self.budget.take(numel * storage.itemsize, "the tensors")
        return _tensor_view(storage, offset, size, stride)


def _as_state_dict(obj) -> dict[str, np.ndarray]:
    """Checks the unpickled object is {name: tensor} and returns owned, contiguous copies."""
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
        raise MalformedFileError(f"expected a state dict of tensors, got a {type(obj).__name__}")
    return {k: np.array(v) for k, v in obj.items()}


def _zip_reader(archive: zipfile.ZipFile, file_size: int):
    """read(name) -> the bytes of an entry stored as torch.save stores them (uncompressed, unencrypted, inside
    the file); the entries read hold at most `file_size` bytes together."""
    budget = ByteBudget(file_size)

    def read(name: str) -> bytes:
        info = archive.getinfo(name)
        if (
            info.compress_type != zipfile.ZIP_STORED
            or info.flag_bits & 0x1
            or info.compress_size != info.file_size
            or not 0 <= info.header_offset < file_size
        ):
            raise MalformedFileError(f"zip entry {one_line(name, 60)} is not stored as torch.save stores entries")
        budget.take(info.file_size, "the zip entries")
        return archive.read(info)

    return read


def _read_zip(path: Path, file_size: int) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise MalformedFileError("a torch zip archive has exactly one <name>/data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        read = _zip_reader(archive, file_size)
        big_endian = f"{prefix}byteorder" in names and read(f"{prefix}byteorder").strip() == b"big"
        storages: dict[str, np.ndarray] = {}

        def load_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
            if key not in storages:
                if f"{prefix}data/{key}" not in names:
                    raise MalformedFileError(f"storage '{key}' is missing from the archive")
                raw = read(f"{prefix}data/{key}")
                if len(raw) < numel * dtype.itemsize:
                    raise MalformedFileError(f"storage '{key}' is truncated")
                file_dtype = dtype.newbyteorder(">" if big_endian else "<")
                storages[key] = np.frombuffer(raw, file_dtype, count=numel).astype(dtype)
            return _same_storage(storages[key], key, dtype, numel)

        unpickler = _RestrictedUnpickler(io.BytesIO(read(pickles[0])), str(path), file_size, load_storage)
        return _as_state_dict(unpickler.load())


def _same_storage(storage: np.ndarray, key: str, dtype: np.dtype, numel: int) -> np.ndarray:
    """`storage`, if every tensor sharing it declared the same type and size."""
    if storage.dtype != dtype or storage.size != numel:
        raise MalformedFileError(f"storage '{key}' is declared with two types or sizes")
    return storage


def _read_legacy(path: Path, file_size: int) -> dict[str, np.ndarray]:
    stream = io.BytesIO(path.read_bytes())
    header = [_RestrictedUnpickler(stream, str(path), file_size).load() for _ in range(3)]
    if header[0] != _LEGACY_MAGIC or header[1] != _LEGACY_PROTOCOL:
        raise MalformedFileError("not a PyTorch weights file: bad magic number")
    if isinstance(header[2], dict) and not header[2].get("little_endian", True):
        raise WeightsFileError(f"{path}: big-endian legacy weights files are not supported")
    storages: dict[str, np.ndarray] = {}
    budget = ByteBudget(file_size)

    def load_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        if key not in storages:  # filled from the rest of the file after the object pickle
            budget.take(numel * dtype.itemsize, "the storages")
            storages[key] = np.empty(numel, dtype)
        return _same_storage(storages[key], key, dtype, numel)

    obj = _RestrictedUnpickler(stream, str(path), file_size, load_storage).load()
    keys = _RestrictedUnpickler(stream, str(path), file_size).load()
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
        raise MalformedFileError("the storage list does not match the tensors")
    for key in keys:
        storage = storages[key]
        (numel,) = struct.unpack("<q", stream.read(8))
        raw = stream.read(storage.nbytes)
        if numel != storage.size or len(raw) != storage.nbytes:
            raise MalformedFileError(f"storage '{key}' is truncated or has the wrong size")
        storage[:] = np.frombuffer(raw, storage.dtype)
    return _as_state_dict(obj)


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a `torch.save`d state dict: {name: array} (float32 tensors come back float32).

    Raises:
      WeightsFileError: missing, unreadable, truncated, damaged or not a PyTorch state dict file (one line).
      UnsafeWeightsFileError: the pickle asks for anything but tensors (nothing is executed).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file {path} does not exist")
    try:
        file_size = path.stat().st_size
        return _read_zip(path, file_size) if zipfile.is_zipfile(path) else _read_legacy(path, file_size)
    except WeightsFileError:
        raise
    except PARSE_ERRORS as error:
        raise WeightsFileError(
            f"{path} is not a valid PyTorch weights file ({reason(error)}); download it again"
        ) from None
    except OSError as error:
        raise WeightsFileError(f"cannot read weights file {path}: {error.strerror or error}") from None
