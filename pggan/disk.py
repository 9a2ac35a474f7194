"""Disk space of a run's workdir: block sizes, readable byte counts, and recognising a full disk.

A full disk shows up as OSError ENOSPC from Python's own writes (sample PNGs, TensorBoard events,
metrics.jsonl) and as a ValueError from tensorstore's (checkpoint arrays: 'RESOURCE_EXHAUSTED: Error
writing local file ...: No space left on device [os_error_code='28']'), possibly wrapped by Orbax.
"""

from __future__ import annotations

import errno
import os
import shutil

_ENOSPC_MARKS = (os.strerror(errno.ENOSPC), f"os_error_code='{errno.ENOSPC}'")


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error`, or an exception it was raised from or during, means that a disk is full."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if any(mark in str(error) for mark in _ENOSPC_MARKS):
            return True
        error = error.__cause__ or error.__context__
    return False


def free_bytes(path: str) -> int:
    """Bytes free for this user on the filesystem holding `path`."""
    return shutil.disk_usage(path).free


def block_size(path: str) -> int:
    """The allocation unit of the filesystem holding `path` (or its nearest existing parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return os.statvfs(path).f_frsize


def format_bytes(count: int) -> str:
    """A byte count for people: '800 KiB', '3.5 MiB', '1.25 GiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{-(-count // 1024)} KiB"
