"""A workdir on a full disk: the free-space check before training, and running out of space mid-run.

The workdirs live on small tmpfs mounts (`mount -t tmpfs -o size=...`, which needs root); where no
tmpfs can be mounted those tests are skipped and say why.
"""

import errno
import os
import re
import subprocess
import sys

import jax
import pytest

from pggan import checkpoint, checksums, disk
from pggan.model import networks
from pggan.sampling import media
from pggan.training import train_state
from tests.run_support import REPO, load_recipe, subprocess_env
from tests.training_support import TrainingProcess, complete_steps

pytestmark = pytest.mark.slow  # launcher runs on a full disk


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a fresh directory on a tmpfs of that size; unmounted afterwards."""
    mounts = []

    def mount(size: str) -> str:
        path = tmp_path / f"tmpfs{len(mounts)}"
        path.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
        )
        if result.returncode:
            pytest.skip(
                f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode}): the full-disk "
                "tests need root (mount -t tmpfs)"
            )
        mounts.append(path)
        return str(path)

    yield mount
    for path in mounts:
        subprocess.run(["umount", str(path)], check=True)


def _command(workdir: str, data_dir: str, *overrides: str) -> list[str]:
    return ["--config=configs/tiny.py", f"--workdir={workdir}", f"--config.dataset.data_dir={data_dir}", *overrides]


def test_is_disk_full_recognises_oserror_tensorstore_and_wrapped_errors():
    assert disk.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not disk.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    tensorstore = ValueError(
        'RESOURCE_EXHAUSTED: Error writing local file "x/manifest.ocdbt": Failed to write 114 '
        "bytes to file 27: No space left on device [os_error_code='28']"
    )
    assert disk.is_disk_full(tensorstore)
    try:
        try:
            raise tensorstore
        except ValueError as inner:
            raise RuntimeError("Save Finalize thread failed") from inner
    except RuntimeError as wrapped:
        assert disk.is_disk_full(wrapped)
    assert disk.is_disk_full(media.MediaError("cannot write s.png ([Errno 28] No space left on device)"))
    assert not disk.is_disk_full(ValueError("shapes do not match"))


def test_the_checkpoint_size_estimate_covers_a_real_checkpoint(tmp_path):
    """The estimate (used by the free-space check) against what Orbax writes for the tiny recipe."""
    spec = networks.ModelSpec.from_config(load_recipe("tiny").model)
    shapes = train_state.state_shapes(spec, spectral=False)
    state = jax.tree.map(lambda s: jax.numpy.ones(s.shape, s.dtype), shapes)
    store = checkpoint.CheckpointStore(str(tmp_path), async_save=False)
    store.save(1, state, {"resolution": 16, "config": load_recipe("tiny").to_json()})
    store.close()
    step_dir = os.path.join(str(tmp_path), "checkpoints", "1")
    used = int(subprocess.check_output(["du", "-s", "-B1", step_dir]).split()[0])
    estimate = checkpoint.disk_bytes(shapes, disk.block_size(step_dir))
    assert used <= estimate <= 1.5 * used, (used, estimate)


def test_a_disk_too_small_for_a_checkpoint_is_refused_in_one_line(tmpfs, tmp_path):
    workdir = os.path.join(tmpfs("200k"), "run")
    result = subprocess.run(
        [sys.executable, "-m", "pggan.main", *_command(workdir, str(tmp_path / "data"))],
        env=subprocess_env(1),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: --workdir '{workdir}' has 200 KiB free but the next checkpoint (564 KiB, written beside the ones "
        "kept) with samples and logs (76 KiB) needs about 640 KiB; free disk space or choose another directory"
    ]
    assert not os.path.exists(os.path.join(workdir, "checkpoints"))


def test_a_disk_that_fills_up_mid_run_stops_it_in_one_line_and_loses_nothing(tmpfs, tmp_path):
    """700 KiB: the free-space check (640 KiB) passes and the first checkpoint (160 images, about 400 KiB
    on tmpfs) fits, the second does not. The asynchronous save fails in Orbax's background thread."""
    mount = tmpfs("700k")
    workdir, data_dir = os.path.join(mount, "run"), str(tmp_path / "data")
    command = _command(workdir, data_dir, "--config.checkpoint.async_save=true", "--config.schedule.total_kimg=0.384")
    env = subprocess_env(1, compilation_cache=str(tmp_path / "compiled"))
    run = TrainingProcess(command, env)
    assert run.wait() == 1, run.log[-3000:]
    assert "Traceback" not in run.log and "Exception ignored" not in run.log, run.log[-3000:]
    errors = [line for line in run.lines if line.startswith(("E", "error:"))]  # absl errors and ours
    assert errors == run.lines[-1:]
    assert re.fullmatch(
        rf"error: no space left on the disk of --workdir {workdir} \(\d+ KiB free; the next "
        r"checkpoint, samples and logs need about 640 KiB\): free space or move the run, then run the "
        r"same command to resume from the newest complete checkpoint",
        errors[0],
    ), errors[0]
    assert complete_steps(workdir) == [160], (os.listdir(os.path.join(workdir, "checkpoints")), run.log[-3000:])
    step_dir = os.path.join(workdir, "checkpoints", "160")
    assert checksums.find_damage(step_dir, checksums.read_manifest(step_dir)) is None
    # With space again, the same command resumes from that checkpoint and finishes.
    subprocess.run(["mount", "-o", "remount,size=8m", mount], check=True)
    run = TrainingProcess(command, env)
    assert run.wait() == 0, run.log[-3000:]
    assert "Resuming from checkpoint 160 " in run.log and "Training complete" in run.log
    assert complete_steps(workdir)[-1] == 384


def test_event_writes_on_a_full_disk_fail_in_the_caller_and_leave_nothing_for_exit(tmpfs):
    """TensorBoard events on a full disk: an OSError in the caller, then nothing printed at exit (tensorboardX's
    SummaryWriter would die in its thread, then block, then fail again at exit)."""
    workdir = tmpfs("64k")
    script = (
        "import numpy as np, sys\n"
        "from pggan import disk\n"
        "from pggan.training.writers import RunWriter\n"
        "writer = RunWriter(sys.argv[1])\n"
        "try:\n"
        "    for step in range(100000):\n"
        "        writer.scalars(step, {'loss': 1.0, 'image': np.random.rand()})\n"
        "        writer._next_flush = 0  # flush every event\n"
        "except Exception as error:\n"
        "    print('stopped:', type(error).__name__, disk.is_disk_full(error))\n"
        "try:\n"
        "    writer.close()\n"
        "except OSError as error:\n"
        "    print('close:', disk.is_disk_full(error))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, workdir],
        env=subprocess_env(1),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "stopped: OSError True\n", "")
