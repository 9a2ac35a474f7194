"""Training runs for tests: recipes, reading a run's final state, and `python -m pggan.main` processes.

`TrainingProcess` starts the real launcher as a subprocess and follows its log line by line, so a
test can wait for a moment of the run (a log line, a checkpoint directory) and then signal it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from pggan import checkpoint, parallel
from pggan.model import losses, networks
from pggan.training import train_step
from pggan.training.step_updates import HostBatches, RoundScalars
from tests.run_support import REPO, load_recipe

TMP_MARK = ".orbax-checkpoint-tmp"


def tiny_config(data_dir: str, **schedule):
    """configs/tiny.py reading (and preparing) its data in `data_dir`, with schedule overrides."""
    config = load_recipe("tiny")
    config.dataset.data_dir = data_dir
    for key, value in schedule.items():
        config.schedule[key] = value
    return config


def one_round(spec, step_config, minibatch=16, resolution=8, num_devices=1, loss=losses.LossConfig()):
    """(state before, state after, metric sums) of one round from seed 0 on fixed random reals (host arrays)."""
    mesh = parallel.make_mesh(jax.devices()[:num_devices])
    step = train_step.TrainStep.create(spec, loss, step_config, mesh)
    images = np.random.default_rng(0).integers(0, 256, (1, minibatch, resolution, resolution, 3), np.uint8)
    sharding = parallel.batch_sharded(mesh, 1)
    order = parallel.device_major_order(minibatch, num_devices)
    data = HostBatches(
        jax.device_put(images[:, order], sharding), jax.device_put(np.zeros((1, minibatch), np.int32), sharding)
    )
    scalars = RoundScalars(jnp.float32(0.7), jnp.float32(1e-3), jnp.float32(1e-3), jnp.float32(0.9), jax.random.key(3))
    before = jax.device_get(step.init_state(0))
    after, sums = step.round_fn(resolution, minibatch)(step.init_state(0), data, scalars)
    return before, jax.device_get(after), {k: float(v) for k, v in sums.items()}


def final_state(workdir: str, step: int | None = None):
    """(state as NumPy, meta) of the latest (or the given) checkpoint, restored on one device."""
    store = checkpoint.CheckpointStore(workdir)
    step = store.latest_step() if step is None else step
    with checkpoint.CheckpointReader(workdir) as reader:
        config = json.loads(reader.meta(step)["config"])
    restorer = train_step.TrainStep.create(
        networks.ModelSpec.from_config(config["model"]),
        losses.LossConfig(),
        train_step.StepConfig(),
        parallel.make_mesh(jax.devices()[:1]),
    )
    state, meta = store.restore(step, restorer.abstract_state())
    store.close()
    return jax.tree.map(np.asarray, state), meta


def tensorboard_events(workdir: str) -> list[tuple[int, str]]:
    """(step, tag) of every summary value in the run's TensorBoard event files, read back frame by frame."""
    from tensorboardX.proto import event_pb2

    found = []
    directory = os.path.join(workdir, "tensorboard")
    for name in sorted(os.listdir(directory)):
        data = open(os.path.join(directory, name), "rb").read()
        offset = 0
        while offset < len(data):  # TFRecord frames: length (u64), its CRC (u32), payload, payload CRC (u32)
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            found.extend((event.step, value.tag) for value in event.summary.value)
            offset += 12 + length + 4
    return found


def complete_steps(workdir: str) -> list[int]:
    """Steps of the complete checkpoints (finished Orbax step directories), from the directory listing."""
    directory = os.path.join(workdir, "checkpoints")
    names = os.listdir(directory) if os.path.isdir(directory) else []
    return sorted(int(name) for name in names if name.isdigit())


def partial_checkpoints(workdir: str) -> list[str]:
    """Names of checkpoint directories still being written (or left behind by a killed writer)."""
    directory = os.path.join(workdir, "checkpoints")
    return sorted(name for name in (os.listdir(directory) if os.path.isdir(directory) else []) if TMP_MARK in name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TrainingProcess:
    """`python -m pggan.main ARGS` (or another module) in a subprocess, its stderr (the absl log)
    collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str], module: str = "pggan.main"):
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._new_line:
                self.lines.append(line.rstrip("\n"))
                self._new_line.notify_all()
        with self._new_line:
            self._new_line.notify_all()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 300) -> re.Match:
        """Blocks until a log line matches the regular expression `pattern`; returns the match."""
        deadline = time.time() + timeout
        seen = 0
        with self._new_line:
            while True:
                for line in self.lines[seen:]:
                    if match := re.search(pattern, line):
                        return match
                seen = len(self.lines)
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"the run ended without a line matching {pattern!r}:\n{self.log[-3000:]}")
                if time.time() > deadline:
                    raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{self.log[-3000:]}")
                self._new_line.wait(timeout=1)

    def wait_until(self, condition, timeout: float = 300, interval: float = 0.002):
        """Polls condition() (e.g. a look at the checkpoint directory) until it returns a true value."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if value := condition():
                return value
            if self.process.poll() is not None:
                raise AssertionError(f"the run ended before the awaited moment:\n{self.log[-3000:]}")
            time.sleep(interval)
        raise AssertionError(f"the awaited moment did not come within {timeout} s:\n{self.log[-3000:]}")

    def send(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 300) -> int:
        """Waits for the process to end; returns its exit status (negative: killed by that signal)."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the run did not end within {timeout} s:\n{self.log[-3000:]}") from None
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        """SIGKILL, if still running (cleanup after a failed test)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
