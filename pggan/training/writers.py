"""What a run writes besides checkpoints: TensorBoard events, sample-grid PNGs and the config.

Layout inside the workdir: `tensorboard/` (event files, protos from tensorboardX: no TensorFlow
needed), `samples/` (PNG grids), `config.json` (the config the run was started with). Only process 0
writes. Events are written in the caller's thread (`EventFile`), so a write error such as a full
disk is raised where the trainer reports it: tensorboardX's SummaryWriter writes from a thread of its
own, which dies on such an error (its bounded queue then blocks the caller), and it flushes its
buffered file again at exit, printing the error once more.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import numpy as np

from pggan import dependencies
from pggan.sampling import media
from pggan.training.config import TrainingConfig

FLUSH_SECONDS = 30


class EventFile:
    """A TensorBoard event file: TFRecord-framed `Event` protos, kept in memory until `flush`.

    The file is unbuffered: what `flush` fails to write is dropped (nothing is left for Python to
    write, and fail at, when it exits).
    """

    def __init__(self, logdir: str):
        event_pb2 = dependencies.require("tensorboardX.proto.event_pb2", "writing TensorBoard events")

        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self._file = open(os.path.join(logdir, name), "ab", buffering=0)
        self._pending = bytearray()
        self.add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add(self, event) -> None:
        from tensorboardX.record_writer import masked_crc32c

        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._pending += header + struct.pack("<I", masked_crc32c(header))
        self._pending += data + struct.pack("<I", masked_crc32c(data))

    def flush(self) -> None:
        pending, self._pending = memoryview(bytes(self._pending)), bytearray()
        while pending:
            pending = pending[self._file.write(pending) :]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._file.close()


class RunWriter:
    """Writes scalars and images of one run; a no-op writer when `enabled` is False (other processes)."""

    def __init__(self, workdir: str, *, enabled: bool = True):
        self.workdir = workdir
        self.enabled = enabled
        self._events = None
        self._next_flush = 0.0
        if enabled:
            os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
            self._events = EventFile(os.path.join(workdir, "tensorboard"))

    def write_config(self, config: TrainingConfig) -> None:
        """Saves the run's config as `config.json` (kept from the first start of the run)."""
        path = os.path.join(self.workdir, "config.json")
        if self.enabled and not os.path.exists(path):
            with open(path + ".tmp", "w") as f:
                f.write(config.to_json(indent=2))
            os.replace(path + ".tmp", path)

    def _write(self, step: int, summaries: list) -> None:
        """Appends one event per tensorboardX Summary proto at `step`; flushes every FLUSH_SECONDS."""
        from tensorboardX.proto import event_pb2

        for summary in summaries:
            self._events.add(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
        if time.time() >= self._next_flush:
            self._events.flush()
            self._next_flush = time.time() + FLUSH_SECONDS

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train") -> None:
        """TensorBoard scalars under '<prefix>/<name>' at `step` (images shown)."""
        if self.enabled:
            from tensorboardX import summary

            self._write(step, [summary.scalar(f"{prefix}/{name}", value) for name, value in values.items()])

    def image(self, step: int, tag: str, image: np.ndarray, relative_path: str) -> None:
        """Saves uint8 [H, W, C] as a PNG at workdir/relative_path and as a TensorBoard image."""
        if self.enabled:
            from tensorboardX import summary

            media.save_png(image, os.path.join(self.workdir, relative_path))
            self._write(step, [summary.image(tag, image, dataformats="HWC")])

    def close(self) -> None:
        if self._events is not None:
            events, self._events = self._events, None
            events.close()
