"""A restricted unpickler for official PGGAN network pickles.

The official code saves `(G, D, Gs)`, three `tfutil.Network` objects whose pickled state is a plain
dict (build settings, the network module's source text, and `(variable name, numpy array)` pairs).
Ordinary `pickle.load` would import `tfutil` (TensorFlow 1) and would run whatever callable a
malicious file names. This unpickler admits exactly:

- `tfutil.Network`, mapped to `NetworkState`, a holder that only stores the state dict;
- numpy arrays and scalars of plain number types (bool, int, uint, float, complex), as numpy pickles
  them under its 1.x (`numpy.core...`) and 2 (`numpy._core...`) module paths: `_reconstruct` plus the
  array's state (protocols 2-4), `_frombuffer` (protocol 5) and `scalar`, with `numpy.ndarray` and
  `numpy.dtype` as their arguments;
- `collections.OrderedDict`.
Every other global (`os.system`, `builtins.eval`, `builtins.bytearray`, any class) raises
`UnsafePickleError` before it is even imported, so nothing from the file is executed. Persistent ids
are refused likewise. Containers (tuple, list, dict, set) come from pickle opcodes, never from globals.

Nothing the file declares is allocated unchecked (numpy's own reconstructors would allocate any shape,
and its dtype state can set flags that make numpy misread memory), so numpy's functions are replaced
by stand-ins that check, before numpy sees anything:
- the opcodes (`safe_unpickling.check_opcodes`): no bytes, str or memo index beyond the file, no opcode
  straddling a frame's end;
- a dtype is a plain number type named as numpy pickles it ('f4', 'i8', 'b1') whose state sets only
  the byte order;
- an array's shape is a tuple of at most 64 sizes, and its data a bytes object of exactly
  (number of elements x item size) bytes;
- the arrays and scalars together hold at most as many bytes as the file (`safe_unpickling.ByteBudget`).
"""

from __future__ import annotations

import collections
import io
import re
from typing import Any

import numpy as np

from pggan.official.errors import THEANO_PICKLE_MESSAGE, SnapshotError, UnsafePickleError
from pggan.safe_unpickling import (
    PARSE_ERRORS,
    BoundedUnpickler,
    ByteBudget,
    MalformedFileError,
    element_count,
    one_line,
    reason,
)

NETWORK_CLASS_PATH = ("tfutil", "Network")
THEANO_NETWORK_CLASS_PATH = ("network", "Network")  # the original Theano code's class: refused with advice
NUMPY_PACKAGES = ("numpy.core", "numpy._core")  # numpy 1.x and numpy 2 paths of the reconstructors
_NUMBER_TYPE = re.compile(r"[biufc][0-9]{1,2}")  # how numpy pickles plain number dtypes: 'f4', 'i8', 'b1'
_BYTE_ORDERS = ("<", ">", "=", "|")


class NetworkState:
    """Stand-in for `tfutil.Network`: keeps the pickled state dict in `.state`, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any):
        del args, kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ArrayClass:
    """What the pickle's `numpy.ndarray` stands for: `_reconstruct`'s first argument, nothing callable."""

    __slots__ = ()


_NDARRAY = _ArrayClass()


class _DType:
    """A pickled numpy dtype: `numpy.dtype(name, align, copy)`, then a state that may set its byte order."""

    __slots__ = ("dtype",)

    def __init__(self, name: Any, align: Any = False, copy: Any = False):
        del align, copy  # how numpy builds it; irrelevant for plain number types
        if not (isinstance(name, str) and _NUMBER_TYPE.fullmatch(name)):
            raise MalformedFileError("an array element type is not a plain number type")
        self.dtype = np.dtype(name)

    def __setstate__(self, state: Any) -> None:
        """numpy's (version, byte order, subarray, names, fields, ...): only the byte order may be given."""
        if not (
            isinstance(state, tuple)
            and len(state) >= 5
            and isinstance(state[1], str)
            and state[1] in _BYTE_ORDERS
            and all(item is None for item in state[2:5])
        ):
            raise MalformedFileError("an array element type has a state other than a byte order")
        self.dtype = self.dtype.newbyteorder(state[1])


def _number_dtype(value: Any) -> np.dtype:
    dtype = getattr(value, "dtype", None) if isinstance(value, _DType) else None
    if dtype is None:
        raise MalformedFileError("an array's element type is not a numpy dtype")
    return dtype


def _check_data(data: Any, dtype: np.dtype, shape: Any, budget: ByteBudget) -> None:
    """`data` holds exactly an array of `shape` and `dtype`, and the file still holds that many bytes."""
    nbytes = element_count(shape, budget.file_size) * dtype.itemsize
    if not isinstance(data, (bytes, bytearray)) or len(data) != nbytes:
        raise MalformedFileError(f"an array's data is not the {nbytes} bytes its shape and type need")
    budget.take(nbytes, "the arrays")


class PickledArray(np.ndarray):
    """An array made by `_reconstruct`; its pickled state is checked before numpy's `__setstate__` sees it."""

    def __setstate__(self, state: Any) -> None:
        budget = self.__dict__.pop("_budget", None)  # set by _reconstruct, used once
        if budget is None:
            raise MalformedFileError("an array's state is given twice")
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[3], bool)):
            raise MalformedFileError("an array's state is not (version, shape, dtype, fortran order, data)")
        _, shape, dtype, fortran_order, data = state
        dtype = _number_dtype(dtype)
        _check_data(data, dtype, shape, budget)
        super().__setstate__((1, shape, dtype, fortran_order, data))


class RestrictedUnpickler(BoundedUnpickler):
    """Unpickler resolving only the globals listed in the module docstring; anything else is refused unimported.

    Reads the pickle at `stream`'s position in a `file_size`-byte file; its arrays and scalars together hold
    at most `file_size` bytes.
    """

    def __init__(self, stream: io.BytesIO, file_size: int, **kwargs: Any):
        super().__init__(stream, file_size, **kwargs)
        numpy_functions = {
            ("multiarray", "_reconstruct"): self._reconstruct,
            ("multiarray", "scalar"): self._scalar,
            ("numeric", "_frombuffer"): self._frombuffer,
        }
        self._admitted = {
            NETWORK_CLASS_PATH: NetworkState,
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("numpy", "ndarray"): _NDARRAY,
            ("numpy", "dtype"): _DType,
        }
        for package in NUMPY_PACKAGES:
            self._admitted.update(
                {(f"{package}.{module}", name): function for (module, name), function in numpy_functions.items()}
            )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == THEANO_NETWORK_CLASS_PATH:
            raise SnapshotError(THEANO_PICKLE_MESSAGE)
        try:
            return self._admitted[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {one_line(f'{module}.{name}', 100)}: an official network pickle holds only "
                f"tfutil.Network states and numpy arrays, so this file is not one (or was tampered with); nothing "
                f"was executed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a pickle with persistent ids: not an official network pickle")

    def _reconstruct(self, array_class: Any, shape: Any, dtype: Any) -> PickledArray:
        """numpy's `_reconstruct(ndarray, (0,), b'b')`: an empty array that the pickled state then fills."""
        del shape, dtype  # a placeholder, which numpy's own function would allocate whatever its size
        if array_class is not _NDARRAY:
            raise MalformedFileError("an array of a class other than numpy.ndarray")
        array = np.ndarray.__new__(PickledArray, (0,), np.uint8)
        array._budget = self.budget
        return array

    def _frombuffer(self, data: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        """numpy's protocol-5 `_frombuffer(bytes or bytearray, dtype, shape, 'C' or 'F')`."""
        if not (isinstance(order, str) and order in ("C", "F")):
            raise MalformedFileError("an array's memory order is neither 'C' nor 'F'")
        dtype = _number_dtype(dtype)
        _check_data(data, dtype, shape, self.budget)
        return np.frombuffer(data, dtype).reshape(shape, order=order)

    def _scalar(self, dtype: Any, data: Any) -> np.generic:
        """numpy's `scalar(dtype, bytes)`: one number."""
        dtype = _number_dtype(dtype)
        _check_data(data, dtype, (), self.budget)
        return np.frombuffer(data, dtype)[0]


def read_network_pickle(path: str) -> Any:
    """Unpickles an official network file with `RestrictedUnpickler` (latin1 strings, as the official loader).

    Returns the unpickled object: for an official snapshot a tuple of three `NetworkState`.
    Raises SnapshotError (missing or unreadable file, truncated, corrupt or self-contradicting pickle) or
    UnsafePickleError, each with a one-line message.
    """
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise SnapshotError(f"no such file: {path!r}; pass the path of an official .pkl with --pkl") from None
    except IsADirectoryError:
        raise SnapshotError(f"{path!r} is a directory; pass the path of an official .pkl file") from None
    except OSError as error:
        raise SnapshotError(f"cannot read {path!r}: {error.strerror or error}") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), len(data), encoding="latin1").load()
    except SnapshotError:
        raise
    except PARSE_ERRORS as error:
        raise SnapshotError(
            f"{path!r} is not a readable network pickle ({reason(error)}): truncated or corrupt "
            f"download? Download it again"
        ) from None
