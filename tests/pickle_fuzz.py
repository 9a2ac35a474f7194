"""Seeded mutations of valid weight files, and a runner that holds a loader to its contract on each.

Mutations: truncation at a random length, random or bit-flipped bytes, and splices of pickle opcodes
(1-3 random opcodes from `pickletools.opcodes`, with random arguments that include huge declared
lengths, inserted at or replacing an opcode of the original).

`run_fuzz` writes each mutant to a file and loads it: the loader must return or raise its one-line
error type, never another exception and never an error caused by MemoryError or RecursionError; no
case may take more than PER_CASE_S of CPU time (a timer interrupts a hang), and none may allocate more than
ALLOCATION_FACTOR x the file's size + ALLOCATION_SLACK bytes at its peak. Allocations are measured with
tracemalloc, which also sees numpy's array data: numpy reports it. A bound removed from a loader shows
up as a peak of the size the file declares (gigabytes), whether or not the pages are ever touched.
"""

from __future__ import annotations

import io
import pickletools
import signal
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

# Process CPU seconds (a CPU-time timer interrupts a hang): a loaded or paused machine does not trip it.
PER_CASE_S = 10.0
ALLOCATION_FACTOR = 8
ALLOCATION_SLACK = 4 << 20
# Declared lengths, counts and indexes: small, around type limits, and far beyond any file.
_NUMBERS = (0, 1, 2, 7, 255, 256, 65535, 2**20, 2**24 + 3, 2**31 - 1, 2**31, 2**32 - 1, 2**40, 2**63 - 1, 2**64 - 1)
_GLOBALS = (
    b"numpy\ndtype\n",
    b"numpy\nndarray\n",
    b"numpy.core.multiarray\n_reconstruct\n",
    b"numpy._core.multiarray\nscalar\n",
    b"numpy._core.numeric\n_frombuffer\n",
    b"tfutil\nNetwork\n",
    b"collections\nOrderedDict\n",
    b"builtins\nbytearray\n",
    b"__builtin__\nlist\n",
    b"os\nsystem\n",
    b"torch._utils\n_rebuild_tensor_v2\n",
    b"torch\nFloatStorage\n",
    b"torch\nBoolStorage\n",
)
_LINES = (
    b"0",
    b"1",
    b"-1",
    b"00",
    b"01",
    b"4294967296",
    b"9" * 30,
    b"1e308",
    b"nan",
    b"'abc'",
    b'"x"',
    b"abc",
    b"''",
    b"1L",
)
_LENGTH_PREFIX = {
    pickletools.TAKEN_FROM_ARGUMENT1: 1,
    pickletools.TAKEN_FROM_ARGUMENT4: 4,
    pickletools.TAKEN_FROM_ARGUMENT4U: 4,
    pickletools.TAKEN_FROM_ARGUMENT8U: 8,
}


def opcode_spans(data: bytes, pickles: int = 1) -> list[tuple[int, int]]:
    """(start, end) byte offsets of the opcodes of the `pickles` consecutive pickles at the start of `data`."""
    stream, starts = io.BytesIO(data), []
    for _ in range(pickles):
        starts += [position for _, _, position in pickletools.genops(stream)]
    ends = starts[1:] + [stream.tell()]
    return list(zip(starts, ends))


def strip_frames(data: bytes) -> bytes:
    """`data` (one pickle) without its FRAME opcodes: the same pickle, in which splices keep their meaning
    (in a framed pickle, most splices only make an opcode straddle a frame end, which is refused early)."""
    frames = [
        (start, end)
        for (start, end), (opcode, _, _) in zip(opcode_spans(data), pickletools.genops(data))
        if opcode.name == "FRAME"
    ]
    kept, previous = [], 0
    for start, end in frames:
        kept.append(data[previous:start])
        previous = end
    return b"".join(kept) + data[previous:]


def _number(rng: np.random.Generator, width: int) -> int:
    value = int(rng.choice(_NUMBERS)) if rng.random() < 0.7 else int(rng.integers(0, 2**63))
    return value % (1 << (8 * width))


def _argument(rng: np.random.Generator, descriptor: pickletools.ArgumentDescriptor | None) -> bytes:
    if descriptor is None:
        return b""
    if descriptor.n == pickletools.UP_TO_NEWLINE:
        if descriptor.name == "stringnl_noescape_pair":
            return _GLOBALS[rng.integers(len(_GLOBALS))]
        return _LINES[rng.integers(len(_LINES))] + b"\n"
    if descriptor.n in _LENGTH_PREFIX:
        width = _LENGTH_PREFIX[descriptor.n]
        length = _number(rng, width)
        return length.to_bytes(width, "little") + rng.bytes(min(length, int(rng.integers(0, 16))))
    return (
        _number(rng, descriptor.n).to_bytes(descriptor.n, "little") if rng.random() < 0.5 else rng.bytes(descriptor.n)
    )


def random_opcodes(rng: np.random.Generator) -> bytes:
    """1-3 opcodes of pickle's opcode set, each with a random argument of its kind."""
    chosen = [pickletools.opcodes[i] for i in rng.integers(0, len(pickletools.opcodes), rng.integers(1, 4))]
    return b"".join(op.code.encode("latin-1") + _argument(rng, op.arg) for op in chosen)


def mutate(data: bytes, spans: list[tuple[int, int]], rng: np.random.Generator) -> tuple[str, bytes]:
    """One random mutation of `data` (opcode splices at `spans`): (description, mutant)."""
    kind = rng.choice(["truncate", "bytes", "insert", "replace"] if spans else ["truncate", "bytes"])
    if kind == "truncate":
        cut = int(rng.integers(0, len(data)))
        return f"truncate at {cut}", data[:cut]
    if kind == "bytes":
        mutant = bytearray(data)
        positions = rng.integers(0, len(data), rng.integers(1, 5))
        for position in positions:
            mutant[position] = (
                mutant[position] ^ (1 << int(rng.integers(8))) if rng.random() < 0.5 else int(rng.integers(256))
            )
        return f"bytes at {positions.tolist()}", bytes(mutant)
    start, end = spans[int(rng.integers(len(spans)))]
    opcodes = random_opcodes(rng)
    if kind == "insert":
        return f"insert {opcodes[:40]!r} at {start}", data[:start] + opcodes + data[start:]
    return f"replace [{start}, {end}) by {opcodes[:40]!r}", data[:start] + opcodes + data[end:]


def mutants(data: bytes, count: int, seed: int, pickles: int = 1) -> Iterator[tuple[str, bytes]]:
    """`count` seeded mutants of `data`; opcodes are spliced into its first `pickles` pickles (0: no splices)."""
    rng = np.random.default_rng(seed)
    spans = opcode_spans(data, pickles)
    for _ in range(count):
        yield mutate(data, spans, rng)


def _hang(signum, frame):
    raise AssertionError(f"a case ran longer than {PER_CASE_S} s")


def run_fuzz(
    load: Callable[[Path], object], cases: Iterable[tuple[str, bytes]], path: Path, error_type: type[Exception]
) -> list[Exception | None]:
    """Loads each (description, file content) of `cases` from `path`: per case, None or the error it raised.

    Raises AssertionError naming the case on any breach of the contract (module docstring).
    """
    outcomes: list[Exception | None] = []
    previous = signal.signal(signal.SIGPROF, _hang)
    tracemalloc.start()
    try:
        for description, data in cases:
            path.write_bytes(data)
            tracemalloc.reset_peak()
            baseline = tracemalloc.get_traced_memory()[0]
            start = time.process_time()
            outcomes.append(_load_one(load, path, error_type, description))
            peak = tracemalloc.get_traced_memory()[1] - baseline
            assert peak <= ALLOCATION_FACTOR * len(data) + ALLOCATION_SLACK, (
                f"{description}: allocated {peak} bytes for a {len(data)}-byte file"
            )
            assert time.process_time() - start < PER_CASE_S, description
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGPROF, previous)
    return outcomes


def _load_one(
    load: Callable[[Path], object], path: Path, error_type: type[Exception], description: str
) -> Exception | None:
    signal.setitimer(signal.ITIMER_PROF, PER_CASE_S)
    try:
        load(path)
        return None
    except error_type as error:
        assert "\n" not in str(error), f"{description}: multi-line message {error}"
        assert not isinstance(error.__context__, (MemoryError, RecursionError)), f"{description}: {error}"
        return error
    except Exception as error:
        raise AssertionError(
            f"{description}: {type(error).__name__} escaped the loader:\n{traceback.format_exc()}"
        ) from error
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def refusal(load: Callable[[Path], object], data: bytes, path: Path, error_type: type[Exception]) -> Exception:
    """The error that loading `data` from `path` raises, held to the same contract as a fuzz case."""
    (error,) = run_fuzz(load, [("the file", data)], path, error_type)
    assert error is not None, "the file was loaded"
    return error
