"""Impossible settings, bad data and bad workdirs: `python -m pggan.main` exits 1 with one line, before compiling.

All cases run as real launcher processes (8 fake CPU devices), started together to share the import time.
"""

import concurrent.futures
import os
import subprocess
import sys

import pytest

from pggan.data.dataset import open_dataset
from pggan.data.source_specs import make_source
from tests.run_support import REPO, subprocess_env
from tests.training_support import free_port

pytestmark = pytest.mark.slow  # the launcher as a subprocess

# name -> (extra launcher arguments; {data} and {tmp} are filled in, the expected error message part)
CASES = {
    "resolution_out_of_range": (
        ["--config.model.resolution=2048"],
        "model.resolution must be a power of two in [8, 1024], got 2048",
    ),
    "initial_resolution": (
        ["--config.schedule.initial_resolution=6"],
        "config.schedule.initial_resolution must be a power of two in [4, model.resolution=16]",
    ),
    "batch_below_device_count": (
        ["--config.schedule.minibatch_base=4"],
        "the minibatch at 4x4 is 4, which does not divide over the 8 devices",
    ),
    "infinite_run_length": (
        ["--config.schedule.total_kimg=inf"],
        "config.schedule.total_kimg must be a positive number, got inf",
    ),
    "batch_not_divisible_by_stddev_groups": (
        ["--config.schedule.minibatch_base=48"],
        "6 images per device, not divisible by the minibatch-stddev group size",
    ),
    "dataset_below_model_resolution": (
        ["--config.dataset.name=small8", "--config.dataset.source="],
        "dataset small8 is 8x8 but the model trains up to 16x16",
    ),
    "missing_dataset": (["--config.dataset.name=absent", "--config.dataset.source="], "no prepared dataset absent in"),
    "unknown_loss": (["--config.loss.name=hinje"], "got 'hinje'"),
    "unknown_config_field": (
        ["--config.loss.gamma=1"],
        "--config.loss.gamma: the config has no field 'gamma' (did you mean 'r2_gamma'?)",
    ),
    "positional_argument": (["extra"], "unexpected arguments extra: every setting is a --flag"),
    "missing_recipe_file": (["--config=configs/absent.py"], "--config: the recipe file cannot be loaded"),
    "unwritable_workdir": (["--workdir={tmp}/a_file/run"], "is not writable (Not a directory)"),
    # A model whose checkpoint needs more space than any disk has: the workdir's free space is too small.
    "full_workdir": (
        ["--config.model.fmap_base=1048576", "--config.model.fmap_max=1048576"],
        "GiB free but the next checkpoint (",
    ),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("launcher_errors")
    data = str(tmp / "data")
    open_dataset("small8", data, prepare_if_missing_from=make_source("synthetic", resolution=8, num_examples=8))
    (tmp / "a_file").write_text("not a directory")

    def launch(name):
        extra = [arg.format(data=data, tmp=tmp) for arg in CASES[name][0]]
        args = ["--config=configs/tiny.py", f"--workdir={tmp}/{name}", f"--config.dataset.data_dir={data}", *extra]
        result = subprocess.run(
            [sys.executable, "-m", "pggan.main", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=subprocess_env(8),
            timeout=300,
            check=False,
        )
        return result, os.path.join(tmp, name)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(CASES, pool.map(launch, CASES)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_line_error_and_exit_status_1(results, name):
    result, workdir = results[name]
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and CASES[name][1] in last_line, result.stderr[-3000:]
    assert not os.path.exists(os.path.join(workdir, "checkpoints"))  # stopped before any training


def test_a_dataset_error_on_process_0_stops_every_process(tmp_path):
    """Process 0 opens (or prepares) the dataset first; when it fails, the others fail with one line too."""
    port = free_port()
    common = [
        "--config=configs/tiny.py",
        f"--workdir={tmp_path}/run",
        f"--config.dataset.data_dir={tmp_path}/data",
        "--config.dataset.name=absent",
        "--config.dataset.source=",
        "--multihost",
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "pggan.main", *common, f"--process_id={i}"],
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=subprocess_env(2),
        )
        for i in range(2)
    ]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [1, 1], errors
    last_lines = [e.strip().splitlines()[-1] for e in errors]
    assert last_lines[0].startswith("error: no prepared dataset absent in")
    assert (
        last_lines[1] == "error: process 0 could not open the dataset (its error says why); fix that and restart "
        "all processes"
    )
