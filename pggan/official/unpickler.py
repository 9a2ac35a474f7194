"""A restricted unpickler for official PGGAN network pickles.

The official code saves `(G, D, Gs)`, three `tfutil.Network` objects whose pickled state is a plain
dict (build settings, the network module's source text, and `(variable name, numpy array)` pairs).
Ordinary `pickle.load` would import `tfutil` (TensorFlow 1) and would run whatever callable a
malicious file names. This unpickler admits exactly:

- `tfutil.Network`, mapped to `NetworkState`, a holder that only stores the state dict;
- numpy array, dtype and scalar reconstruction (numpy 1.x `numpy.core...` and numpy 2 `numpy._core...`
  paths, including the protocol-5 `_frombuffer` form);
- builtin containers.
Every other global (`os.system`, `builtins.eval`, any class) raises `UnsafePickleError` before it is
even imported, so nothing from the file is executed. Persistent ids are refused likewise.
"""

from __future__ import annotations

import builtins
import collections
import pickle
from typing import Any

import numpy as np

from pggan.official.errors import THEANO_PICKLE_MESSAGE, SnapshotError, UnsafePickleError

NETWORK_CLASS_PATH = ("tfutil", "Network")
THEANO_NETWORK_CLASS_PATH = ("network", "Network")  # the original Theano code's class: refused with advice


class NetworkState:
    """Stand-in for `tfutil.Network`: keeps the pickled state dict in `.state`, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any):
        del args, kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _numpy_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy's own functions, whatever module this numpy keeps them in
    scalar = np.float32(0).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    admitted = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        admitted[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        admitted[(f"{package}.multiarray", "scalar")] = scalar
        admitted[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return admitted


_BUILTIN_CONTAINERS = {("builtins", name): getattr(builtins, name)
                       for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray")}
ADMITTED_GLOBALS: dict[tuple[str, str], Any] = {
    NETWORK_CLASS_PATH: NetworkState,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **_BUILTIN_CONTAINERS,
    **_numpy_globals(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only `ADMITTED_GLOBALS`; anything else is refused unimported."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == THEANO_NETWORK_CLASS_PATH:
            raise SnapshotError(THEANO_PICKLE_MESSAGE)
        try:
            return ADMITTED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: an official network pickle holds only tfutil.Network "
                f"states and numpy arrays, so this file is not one (or was tampered with); nothing was executed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a pickle with persistent ids: not an official network pickle")


def read_network_pickle(path: str) -> Any:
    """Unpickles an official network file with `RestrictedUnpickler` (latin1 strings, as the official loader).

    Returns the unpickled object: for an official snapshot a tuple of three `NetworkState`.
    Raises SnapshotError (missing or unreadable file, truncated or corrupt pickle) or UnsafePickleError.
    """
    try:
        with open(path, "rb") as file:
            return RestrictedUnpickler(file, encoding="latin1").load()
    except SnapshotError:
        raise
    except FileNotFoundError:
        raise SnapshotError(f"no such file: {path!r}; pass the path of an official .pkl with --pkl") from None
    except IsADirectoryError:
        raise SnapshotError(f"{path!r} is a directory; pass the path of an official .pkl file") from None
    except OSError as error:
        raise SnapshotError(f"cannot read {path!r}: {error.strerror or error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError, OverflowError, RecursionError) as error:
        raise SnapshotError(f"{path!r} is not a readable network pickle (truncated or corrupt download?): "
                            f"{type(error).__name__}: {str(error)[:120]}") from None
