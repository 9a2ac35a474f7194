"""SIGTERM / SIGINT become a stop after the current round, agreed by every process of a run."""

import signal

import pytest

from tests.run_support import subprocess_env
from tests.training_support import TrainingProcess, free_port

pytestmark = pytest.mark.slow  # stop requests to launcher subprocesses


WORKER = "tests.stop_request_worker"
STOPPED = r"stopped after (\d+) rounds by (.+)$"


def test_sigterm_stops_a_single_process_after_the_current_round():
    worker = TrainingProcess(["0", "1", "0"], subprocess_env(2), module=WORKER)
    try:
        worker.wait_for_line(r"round 3$")
        worker.send(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, worker.log
    finally:
        worker.kill()
    rounds, name = worker.wait_for_line(STOPPED).groups()
    assert name == "SIGTERM" and int(rounds) >= 3


def test_ctrl_c_on_one_process_stops_both_after_the_same_round():
    port = str(free_port())
    workers = [TrainingProcess([str(i), "2", port], subprocess_env(2), module=WORKER) for i in range(2)]
    try:
        for worker in workers:
            worker.wait_for_line(r"round 5$")
        workers[1].send(signal.SIGINT)
        assert [w.wait(timeout=60) for w in workers] == [0, 0], workers[0].log + workers[1].log
    finally:
        for worker in workers:
            worker.kill()
    (rounds0, name0), (rounds1, name1) = (w.wait_for_line(STOPPED).groups() for w in workers)
    assert rounds0 == rounds1 and int(rounds0) > 5
    assert name1 == "SIGINT" and name0 == "a signal to another process"
    # Process 1 finished at most three rounds after the signal: the one in progress, the one whose
    # all-process OR (holding its flag) was in flight, and the one that read that OR.
    received = next(i for i, line in enumerate(workers[1].lines) if "SIGINT received" in line)
    assert sum(line.startswith("round ") for line in workers[1].lines[received:]) <= 3, workers[1].log
