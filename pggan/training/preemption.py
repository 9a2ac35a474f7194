"""Stopping a run cleanly on SIGTERM (preemption), SIGINT (Ctrl-C) or its time limit, on one process or many.

`StopRequest` turns the signals (and `request`, the loop's time limit) into a stop decision that the
training loop reads after every round. In a multi-process run the signal may reach only some processes
(Ctrl-C on one host, a preemption notice delivered host by host), yet all of them must stop after the
same round, or the others would wait forever in the next round's collectives. So after each round every
process contributes its flag to an all-process OR (`pggan.parallel.any_process`) that is read one round
later: the host never waits for the devices, and every process stops after the same round.
"""

from __future__ import annotations

import signal

import jax
from absl import logging

from pggan import parallel


class StopRequest:
    """Context manager: while active, SIGTERM and SIGINT request a stop instead of killing the process
    (as does `request`).

    A second SIGINT raises KeyboardInterrupt at once (the last complete checkpoint stays valid).
    """

    def __init__(self, mesh: jax.sharding.Mesh):
        self.mesh = mesh
        self.signal_name: str | None = None  # the first signal received by this process
        self._previous = {}
        self._pending = None  # the all-process OR started after the previous round
        self._agreed = False

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        del frame
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signal_name = signal.Signals(signum).name
        logging.warning("%s received: finishing the current round, then saving a checkpoint.", self.signal_name)

    def request(self, reason: str) -> None:
        """Requests a stop for `reason` (e.g. 'the time limit'), as a signal would."""
        if self.signal_name is None:
            self.signal_name = reason

    @property
    def requested(self) -> bool:
        """Whether the loop should stop now: a signal here (one process) or, agreed, anywhere (several)."""
        return self._agreed if jax.process_count() > 1 else self.signal_name is not None

    def after_round(self) -> None:
        """Call after dispatching every round (on every process): updates `requested`.

        With several processes this reads the OR started after the previous round (which waits only for
        that round) and starts a new one.
        """
        if jax.process_count() == 1:
            return
        if self._pending is not None and bool(jax.device_get(self._pending)):
            self._agreed = True
            self.signal_name = self.signal_name or "a signal to another process"
        self._pending = parallel.any_process(self.signal_name is not None, self.mesh)
