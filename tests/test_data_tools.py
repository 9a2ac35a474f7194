"""tools/prepare_dataset.py and tools/benchmark.py --input_only, run as users run them."""

import os
import subprocess
import sys

import numpy as np
import pytest

from pggan.data import builder, dataset, source_specs
from tests import data_helpers
from tests.run_support import REPO, subprocess_env

pytestmark = pytest.mark.slow  # the data tools as subprocesses


def _run_tool(*args):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=subprocess_env(), timeout=300, cwd=REPO
    )


def test_prepare_dataset_cli_in_parallel_matches_inline_preparation(tmp_path):
    images = tmp_path / "images"
    data_helpers.make_mixed_folder(str(images))
    result = _run_tool(
        "tools/prepare_dataset.py",
        f"--source=folder:{images}",
        "--resolution=16",
        "--name=mixed",
        f"--data_dir={tmp_path / 'cli'}",
        "--num_workers=2",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Prepared 10 images at 16x16" in result.stdout and "Skipped 2 unreadable images" in result.stdout
    inline = builder.prepare_dataset(
        source_specs.make_source(f"folder:{images}", resolution=16), str(tmp_path / "inline"), "mixed", progress=False
    )
    assert inline.num_examples == 10
    from_cli = dataset.open_dataset("mixed", str(tmp_path / "cli"))
    from_inline = dataset.open_dataset("mixed", str(tmp_path / "inline"))
    for resolution in from_cli.levels:  # deterministic: same examples in the same order
        for got, want in zip(from_cli.read_level(resolution), from_inline.read_level(resolution)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "resolution,message",
    [
        ("16", "error: no images"),
        ("2048", "error: resolution must be a power of two in [4, 1024]"),
    ],
)
def test_prepare_dataset_cli_errors_are_one_line(tmp_path, resolution, message):
    (tmp_path / "empty").mkdir()
    result = _run_tool(
        "tools/prepare_dataset.py",
        f"--source=folder:{tmp_path / 'empty'}",
        f"--resolution={resolution}",
        f"--data_dir={tmp_path}",
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.stderr
    assert not os.listdir(tmp_path / "empty") and sorted(os.listdir(tmp_path)) == ["empty"]  # nothing written


def test_benchmark_input_only_reports_throughput(tmp_path):
    result = _run_tool(
        "tools/benchmark.py",
        "--input_only",
        "--resolutions=8,16",
        "--seconds=0.3",
        "--num_examples=64",
        f"--data_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["8", "16"]
    assert all(float(row[2]) > 0 for row in rows)
