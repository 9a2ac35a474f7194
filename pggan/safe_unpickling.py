"""Bounds shared by the restricted unpicklers of third-party weight files (`pggan.metrics.torch_pickle`,
`pggan.official.unpickler`): nothing made while reading a file may take more memory than the file holds.

CPython's unpickler allocates what an opcode declares before it reads anything: `BINBYTES8 n` allocates
n bytes, `LONG_BINPUT i` grows the memo to 2i entries, so a 20-byte file can ask for gigabytes.
`BoundedUnpickler` therefore reads from memory and parses each pickle's opcodes first, building nothing
(`check_opcodes`): every length-prefixed argument must lie inside the data, every memo index must be
below the number of opcodes before it, and no opcode may straddle the end of a frame. What the loaders
build themselves from numbers in the file (arrays, storages) is checked with `bounded_int` and
`element_count` and paid for from a `ByteBudget` of the file's size.

Every check raises `MalformedFileError`, whose message is the reason (a short phrase); each loader turns
it, and everything else in `PARSE_ERRORS` that a hostile file can provoke, into its own one-line error.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import struct
import zipfile
from typing import Any

MAX_DIMS = 64  # numpy's limit on array dimensions

# What parsing a damaged or hostile file can raise, besides MalformedFileError (a ValueError).
PARSE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    struct.error,
    zipfile.BadZipFile,
    NotImplementedError,
    OverflowError,
    MemoryError,
    RecursionError,
)
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


class MalformedFileError(ValueError):
    """A file whose numbers contradict it: a length, size or offset beyond what the file holds."""


def check_opcodes(stream: io.BytesIO) -> None:
    """Checks the pickle that starts at `stream`'s position (up to its STOP), then rewinds the stream.

    Raises ValueError for an unknown opcode or an argument that runs past the end of the data (the
    declared length of bytes, str, bytearray or long arguments), MalformedFileError for a memo index
    that is not below the number of opcodes before it (the unpickler sizes its memo by the index), and
    for an opcode that straddles the end of a frame or a frame that starts inside another: CPython's
    unpickler reads such an opcode's argument from after the frame, not from the bytes checked here.
    """
    start = stream.tell()
    frame_end = opcode_start = start
    for count, (opcode, argument, position) in enumerate(pickletools.genops(stream)):
        _check_frame(opcode_start, position, frame_end)
        if opcode.name == "FRAME":
            if position < frame_end:
                raise MalformedFileError(f"the frame at byte {position} starts inside another")
            frame_end = stream.tell() + argument
        elif opcode.name in _MEMO_PUTS and not 0 <= argument <= count:
            raise MalformedFileError(f"memo index {argument} after only {count} opcodes")
        opcode_start = position
    _check_frame(opcode_start, stream.tell(), frame_end)
    stream.seek(start)


def _check_frame(opcode_start: int, opcode_end: int, frame_end: int) -> None:
    if opcode_start < frame_end < opcode_end:
        raise MalformedFileError(f"the opcode at byte {opcode_start} straddles the end of its frame")


class ByteBudget:
    """The bytes that objects built from one file may still take; starts at the file's size.

    Each file's arrays or storages hold distinct parts of it, so together they never need more bytes
    than the file: a file whose arrays all view the same data, or declare more than it holds, runs out.
    """

    def __init__(self, file_size: int):
        self.file_size = file_size
        self.left = file_size

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise MalformedFileError(
                f"{what} would need {nbytes} bytes, more than the {self.file_size}-byte file holds"
            )
        self.left -= nbytes


class BoundedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` for the pickle at `stream`'s position in a `file_size`-byte file, its opcodes checked
    first (`check_opcodes`); `budget` (of the file's size) pays for what subclasses build from the file.

    Subclasses admit their own globals in `find_class`; this one admits none.
    """

    def __init__(self, stream: io.BytesIO, file_size: int, **kwargs: Any):
        check_opcodes(stream)
        super().__init__(stream, **kwargs)
        self.budget = ByteBudget(file_size)

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"global {one_line(f'{module}.{name}', 100)} is not admitted")


def bounded_int(value: Any, what: str, limit: int) -> int:
    """`value` if it is an int in [0, limit], else MalformedFileError naming `what`."""
    if not isinstance(value, int):
        raise MalformedFileError(f"{what} is a {type(value).__name__}, not an int")
    if not 0 <= value <= limit:
        shown = value if value.bit_length() <= 64 else f"of {value.bit_length()} bits"
        raise MalformedFileError(f"{what} {shown} is outside [0, {limit}]")
    return value


def element_count(shape: Any, limit: int) -> int:
    """Elements of an array `shape`: a tuple of at most MAX_DIMS ints in [0, limit].

    Its dimensions other than zeros must multiply to at most `limit` as well, so that neither the array
    nor iterating over a zero-size one can exceed the file. Raises MalformedFileError.
    """
    if not isinstance(shape, tuple) or len(shape) > MAX_DIMS:
        raise MalformedFileError(f"array shape is not a tuple of at most {MAX_DIMS} sizes")
    dims = [bounded_int(n, "array dimension", limit) for n in shape]
    if math.prod(max(n, 1) for n in dims) > limit:
        raise MalformedFileError(f"array shape {tuple(dims)} has more elements than the file has bytes")
    return math.prod(dims)


def one_line(text: str, limit: int = 120) -> str:
    """`text` (a name or message taken from the file) on one line, cut after `limit` characters."""
    return " ".join(text.split())[:limit]


def reason(error: BaseException) -> str:
    """A one-line phrase for any of PARSE_ERRORS: the message of a MalformedFileError, else type and message."""
    if isinstance(error, MalformedFileError):
        return str(error)
    message = one_line(str(error))
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
