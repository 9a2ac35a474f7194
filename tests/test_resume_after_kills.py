"""Fault injection on real training processes: SIGKILL at several moments, SIGTERM, exact resume.

`python -m pggan.main` trains the tiny recipe at 8x8 (4x4 stabilisation, then the 8x8 fade-in and
stabilisation) with asynchronous checkpoints after every tick. One workdir is killed and restarted
with the same command several times; its final parameters must equal, bit for bit, those of an
uninterrupted run of the same command. Both runs use the same compiled executables (a shared
compilation cache; the restarts then start in seconds), so on CPU any difference would be a resume bug.

Schedule of this run (images shown): 4x4 stabilisation until 160 (rounds of 32), the 8x8 fade-in
160 -> 256 (alpha 0.25, 0.5, 0.75, 1), 8x8 stabilisation 256 -> 640; a checkpoint every 64 images
and at 160 (the last of the 4x4 stage).
"""

import json
import os
import re
import shutil
import signal

import jax
import numpy as np
import pytest

from pggan import checkpoint
from tests.run_support import subprocess_env
from tests.training_support import TrainingProcess, complete_steps, final_state, free_port, partial_checkpoints

pytestmark = pytest.mark.slow  # subprocess training runs killed and resumed

TOTAL = 640
FADE = (160, 256)
RECIPE = [
    "--config=configs/tiny.py",
    "--config.model.resolution=8",
    f"--config.schedule.total_kimg={TOTAL / 1000}",
    "--config.schedule.tick_kimg_base=0.064",
    "--config.checkpoint.every_ticks=1",
    "--config.checkpoint.async_save=true",
    "--config.checkpoint.keep=100",
    "--config.samples.every_ticks=1000",
]
RESUMED = r"Resuming from checkpoint (\d+) "


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted reference run; returns a function starting the same command in another workdir."""
    root = tmp_path_factory.mktemp("kills")
    env = subprocess_env(1, compilation_cache=str(root / "compiled"))

    def start(workdir: str) -> TrainingProcess:
        return TrainingProcess([*RECIPE, f"--workdir={workdir}", f"--config.dataset.data_dir={root / 'data'}"], env)

    reference = start(str(root / "reference"))
    assert reference.wait() == 0, reference.log[-3000:]
    assert any(name.startswith("jit__per_device_call") for name in os.listdir(root / "compiled"))  # the cache of env
    start.reference = str(root / "reference")
    return start


def _resumed_step(run: TrainingProcess) -> int:
    return int(run.wait_for_line(RESUMED).group(1))


def _kill(run: TrainingProcess) -> None:
    run.send(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL


def test_killed_and_stopped_run_resumes_to_bit_identical_parameters(runs, tmp_path):
    workdir = str(tmp_path / "victim")
    faults = []
    try:
        # 1. SIGKILL while an asynchronous checkpoint is being written (4x4 stabilisation). Retried if
        #    the write happened to complete in the instant between seeing it and the kill.
        for _ in range(3):
            run = runs(workdir)
            if complete_steps(workdir):
                _resumed_step(run)
            done_before = complete_steps(workdir)
            run.wait_until(
                lambda before=done_before: complete_steps(workdir) != before and partial_checkpoints(workdir)
            )
            _kill(run)
            if partial := partial_checkpoints(workdir):
                break
        assert partial, "no kill landed inside a checkpoint write"
        newest_complete = complete_steps(workdir)[-1]
        faults.append(f"SIGKILL during the write of {partial}; newest complete checkpoint {newest_complete}")

        # 2. The same command resumes from the newest complete checkpoint, ignoring the partial one.
        #    SIGKILL once a mid-fade checkpoint is complete: the kill lands inside the fade-in.
        run = runs(workdir)
        assert _resumed_step(run) == newest_complete
        run.wait_until(lambda: [s for s in complete_steps(workdir) if FADE[0] < s < FADE[1]])
        _kill(run)
        faults.append(f"SIGKILL mid-fade, complete checkpoints {complete_steps(workdir)}")

        # 3. Resumes mid-fade (0 < alpha < 1). SIGTERM after its first tick: the round finishes, a
        #    checkpoint is written at that point, and the process exits 0 saying how to resume.
        run = runs(workdir)
        resumed = _resumed_step(run)
        assert FADE[0] < resumed < FADE[1]
        with checkpoint.CheckpointReader(workdir) as reader:
            assert 0 < reader.meta(resumed)["alpha"] < 1
        run.wait_for_line(r"tick +\d+ ")
        run.send(signal.SIGTERM)
        assert run.wait() == 0, run.log[-3000:]
        stopped = int(
            re.search(
                r"Stopped by SIGTERM at .*checkpoint (\d+) .*Run the same command again to resume", run.log
            ).group(1)
        )
        assert complete_steps(workdir)[-1] == stopped < TOTAL
        faults.append(f"SIGTERM, stopped with checkpoint {stopped}")

        # 4. Resumes from the SIGTERM checkpoint and trains to the end.
        run = runs(workdir)
        assert _resumed_step(run) == stopped
        assert run.wait() == 0, run.log[-3000:]
    finally:
        run.kill()
    print("fault injection:", "; ".join(faults))

    resumed_state, meta = final_state(workdir)
    reference_state, _ = final_state(runs.reference)
    assert meta["nimg"] == TOTAL
    for a, b in zip(jax.tree.leaves(resumed_state), jax.tree.leaves(reference_state)):
        np.testing.assert_array_equal(a, b)
    assert partial_checkpoints(workdir) == []  # the partial write was cleaned up on restart
    with checkpoint.CheckpointReader(workdir) as reader, checkpoint.CheckpointReader(runs.reference) as reference:
        assert reader.stage_final_steps() == reference.stage_final_steps() == [160, TOTAL]


def _file_kind(path: str) -> str:
    """What a checkpoint file is, from its content: 'json', 'text', 'ocdbt' or 'zstd'; fails otherwise."""
    with open(path, "rb") as f:
        data = f.read()
    assert not data.startswith(b"\x80") or data[1:2] not in (b"\x02", b"\x03", b"\x04", b"\x05"), f"pickle: {path}"
    if data.startswith(b"\x0c\xdb"):  # tensorstore OCDBT manifest / data file
        return "ocdbt"
    if data.startswith(b"\x28\xb5\x2f\xfd"):  # zstd frame (compressed array chunks)
        return "zstd"
    text = data.decode("utf-8")
    try:
        json.loads(text)
        return "json"
    except json.JSONDecodeError:
        assert os.path.basename(path) == "commit_success.txt", f"unexpected file {path}: {text[:80]!r}"
        return "text"


def test_checkpoints_hold_no_pickle(runs):
    """Every file of every checkpoint is JSON, a commit marker, or tensorstore (OCDBT / zstd) data."""
    kinds = {}
    for directory, _, names in os.walk(os.path.join(runs.reference, "checkpoints")):
        for name in names:
            assert not name.endswith((".pkl", ".pickle", ".npy", ".npz")), name
            kind = _file_kind(os.path.join(directory, name))
            kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds["json"] and kinds["ocdbt"], kinds


def test_the_package_loads_no_pickle_outside_its_restricted_unpicklers():
    """Only the restricted unpicklers of foreign files (and their shared bounds) may touch pickle; nothing may
    allow it in NumPy."""
    package = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pggan")
    restricted = {
        os.path.join("official", "unpickler.py"),
        os.path.join("metrics", "torch_pickle.py"),
        "safe_unpickling.py",
    }
    offenders = []
    for directory, _, names in os.walk(package):
        for name in (n for n in names if n.endswith(".py")):
            path = os.path.join(directory, name)
            with open(path, encoding="utf-8") as f:
                source = f.read()
            relative = os.path.relpath(path, package)
            if re.search(r"allow_pickle\s*=\s*True|torch\.load|\bdill\b|cloudpickle|marshal\.load", source):
                offenders.append(relative)
            if re.search(r"\bpickle\.(load|loads|Unpickler)\b|import pickle|from pickle", source) and (
                relative not in restricted
            ):
                offenders.append(relative)
    assert offenders == []


MULTI_TOTAL = 384


def test_two_processes_resume_after_one_is_killed_and_match_one_device(runs, tmp_path):
    """Two JAX processes (gloo collectives, two CPU devices each) continue the reference run's 8x8 stage.

    They start from the reference's checkpoint 160 (written by one process on one device), so only the
    8x8 round is compiled; the dataset is prepared anew by process 0 while process 1 waits.
    """
    workdir, port = str(tmp_path / "multi"), free_port()
    shutil.copytree(
        os.path.join(runs.reference, "checkpoints", str(FADE[0])), os.path.join(workdir, "checkpoints", str(FADE[0]))
    )
    env = subprocess_env(2, compilation_cache=str(tmp_path / "compiled"))
    args = [
        *RECIPE,
        f"--config.schedule.total_kimg={MULTI_TOTAL / 1000}",
        f"--workdir={workdir}",
        f"--config.dataset.data_dir={tmp_path / 'data'}",
        "--multihost",
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
    ]

    def start():
        return [TrainingProcess([*args, f"--process_id={i}"], env) for i in range(2)]

    processes = start()
    try:
        # SIGKILL process 0 (the coordinator) once a checkpoint of this run is complete: process 1
        # notices and terminates by itself.
        assert [_resumed_step(p) for p in processes] == [FADE[0], FADE[0]]
        processes[0].wait_until(lambda: complete_steps(workdir)[-1] > FADE[0])
        _kill(processes[0])
        assert processes[1].wait(timeout=120) != 0
        newest = complete_steps(workdir)[-1]

        # The same command on both hosts resumes from the newest complete checkpoint and finishes.
        processes = start()
        assert [_resumed_step(p) for p in processes] == [newest, newest]
        assert [p.wait() for p in processes] == [0, 0], processes[0].log[-3000:] + processes[1].log[-3000:]
    finally:
        for p in processes:
            p.kill()
    print(
        f"two processes: SIGKILL to process 0 after checkpoint {newest}; process 1 terminated by itself; "
        f"both resumed from {newest} and finished"
    )

    # The same computation as on one device (4 devices x 4 samples form the same minibatch-stddev
    # groups as 1 x 16), up to the order of floating-point sums in the all-reduces. Adam normalizes each
    # update to about the learning rate, so where a gradient is nearly zero (biases whose pixel
    # gradients cancel) its rounding noise steers the parameter: measured after 384 images, relative
    # differences up to 1.6e-3 of an array's norm (biases), 1.9e-2 in Adam's first moments (the last
    # gradient). A wrong grouping, a lost or repeated step, or another data order change every array by
    # tens of percent.
    state, meta = final_state(workdir)
    reference, _ = final_state(runs.reference, step=MULTI_TOTAL)
    assert meta["nimg"] == MULTI_TOTAL
    assert jax.tree.map(int, state["counters"]) == jax.tree.map(int, reference["counters"])
    for name, bound in (("generator", 1e-2), ("discriminator", 1e-2), ("generator_ema", 1e-2), ("optimizers", 1e-1)):
        for a, b in zip(jax.tree.leaves(state[name]), jax.tree.leaves(reference[name])):
            b = np.asarray(b, np.float64)
            assert np.linalg.norm(a - b) <= bound * max(np.linalg.norm(b), 1e-6), name
