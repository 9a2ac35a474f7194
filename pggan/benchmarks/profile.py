"""Where a compiled training round spends its time: XLA's per-op trace, summed per op kind.

`trace_round` records one round of a `PreparedStep` with `jax.profiler`; `op_kind_times` reads the
trace (an .xplane.pb file) back and sums the events XLA's executor threads record per kind of op
(`convolution`, `dot`, `ynn_fusion`, `transpose_copy_fusion`, ...: an op's name without its number).
On CPUs these are the thunks of the XLA:CPU runtime, one event per op executed; a kernel that runs
in a library's own thread pool is counted on the thread that waits for it.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import os
import re

import jax

from pggan.benchmarks.step import PreparedStep

# Events that are containers of others (the executor itself, waits), not ops.
_CONTAINER_EVENT = re.compile(r"ThunkExecutor|ExecuteHelper|Await|wait for completion")
_OP_NUMBER = re.compile(r"\.\d+$")


@dataclasses.dataclass(frozen=True)
class OpKindTime:
    """One op kind's total: seconds summed over its events (float, >= 0), events (int), share of all ops' seconds."""

    kind: str
    seconds: float
    events: int
    share: float


def trace_round(prepared: PreparedStep, directory: str) -> str:
    """Traces one round of `prepared` into `directory`; returns the path of the .xplane.pb written."""
    jax.block_until_ready(prepared.state)
    with jax.profiler.trace(directory):
        prepared.time_rounds(1)
    paths = sorted(glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    if not paths:
        raise RuntimeError(f"jax.profiler wrote no .xplane.pb under {directory}")
    return paths[-1]


def op_kind_times(xplane_path: str, thread_pattern: str = "XLA") -> list[OpKindTime]:
    """Per op kind, the summed duration of the ops on the threads whose name contains `thread_pattern`.

    Sorted by seconds, largest first; shares add up to 1 (an empty list when no op was recorded).
    """
    data = jax.profiler.ProfileData.from_file(xplane_path)
    seconds, events = collections.Counter(), collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if thread_pattern not in line.name:
                continue
            for event in line.events:
                if _CONTAINER_EVENT.search(event.name):
                    continue
                kind = _OP_NUMBER.sub("", event.name)
                seconds[kind] += event.duration_ns / 1e9
                events[kind] += 1
    total = sum(seconds.values())
    return [OpKindTime(kind, s, events[kind], s / total) for kind, s in seconds.most_common()]


def op_kind_table(times: list[OpKindTime], top: int = 12) -> str:
    """The `top` largest op kinds as a text table, the rest summed in one line."""
    lines = [f"  {'op kind':<28} {'ms':>9} {'ops':>7} {'share':>6}"]
    for t in times[:top]:
        lines.append(f"  {t.kind:<28} {t.seconds * 1e3:9.1f} {t.events:7d} {t.share:6.1%}")
    rest = times[top:]
    if rest:
        seconds, events, share = (sum(getattr(t, f) for t in rest) for f in ("seconds", "events", "share"))
        label = f"({len(rest)} other kinds)"
        lines.append(f"  {label:<28} {seconds * 1e3:9.1f} {events:7d} {share:6.1%}")
    return "\n".join(lines)
