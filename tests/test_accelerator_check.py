"""tools/accelerator_check.py rehearsed end to end on the CPU, as on a GPU machine without the data stack."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from pggan.data import builder
from pggan.data.sources import SyntheticSource
from tests.run_support import REPO
from tests.tool_support import load_tool

HIDDEN = "tensorflow_datasets,grain,imageio_ffmpeg,imageio"


@pytest.mark.slow
def test_rehearsal_runs_every_part_without_tfds_grain_or_imageio(tmp_path):
    builder.prepare_dataset(SyntheticSource(16, 64), str(tmp_path / "data"), "carried", num_workers=1, progress=False)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "accelerator_check.py"),
            f"--out={out}",
            f"--data_dir={tmp_path / 'data'}",
            "--dataset=carried",
            "--rehearse",
            f"--hide_packages={HIDDEN}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"},
    )  # one device, as one GPU
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["accelerator_check.json", "accelerator_check.log", "grid.png"]
    report = json.loads((out / "accelerator_check.json").read_text())
    assert report["failed_parts"] == [] and report["hidden_packages"] == HIDDEN and report["rehearsal"] is True
    parts = report["parts"]
    assert list(parts) == ["env", "step_bf16_8", "step_f32_4", "train", "tests", "projection"]
    assert parts["env"]["platform"] == "cpu" and parts["env"]["jax"] and len(parts["env"]["devices"]) == 1
    for name, dtype, resolution in (("step_bf16_8", "bfloat16", 8), ("step_f32_4", "float32", 4)):
        (row,) = parts[name]["results"]
        assert (row["resolution"], row["compute_dtype"], row["minibatch"], row["num_devices"]) == (
            resolution,
            dtype,
            16,
            1,
        )
        assert row["img_per_s"] > 0 and row["compile_s"] > 0 and row["memory_bytes_per_device"] > 0
    train = parts["train"]
    assert train["checkpoints_at_sigterm"][0] == 128  # the 4x4 stage's checkpoint
    assert train["first"]["exit_status"] == 0 and "Stopped by SIGTERM" in train["first"]["stopped_line"]
    assert train["first"]["checkpoints"][-1] < 384  # stopped before the end
    assert "Resuming from checkpoint" in train["resumed"]["resumed_line"]
    assert train["resumed"]["exit_status"] == 0 and train["resumed"]["checkpoints"][-1] == 384
    assert "Training complete: 0.4 kimg" in train["resumed"]["complete_line"]
    assert Image.open(out / "grid.png").size == (4 * 8, 4 * 8)  # a 4x4 grid of the final 8x8 images
    assert parts["tests"]["outcomes"] == {"PASSED": 2} and parts["tests"]["not_passed"] == []
    projection = parts["projection"]  # tiny's 0.768 kimg: 4, 8 and 16 px stages, 8 px measured
    assert (projection["recipe"], projection["total_kimg"], projection["num_devices"]) == ("configs/tiny.py", 0.768, 1)
    assert {r: e["rate_source"] for r, e in projection["per_resolution"].items()} == {
        "4": "nearest",
        "8": "measured",
        "16": "nearest",
    }
    assert sum(e["images"] for e in projection["per_resolution"].values()) == 768
    log = (out / "accelerator_check.log").read_text()
    assert "part tests: ok" in log and "Traceback" not in log
    # A part rerun alone replaces its own result and keeps the others'.
    rerun = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "accelerator_check.py"),
            f"--out={out}",
            "--rehearse",
            "--parts=projection",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    again = json.loads((out / "accelerator_check.json").read_text())
    assert list(again["parts"]) == list(parts) and again["parts"]["train"] == train
    assert again["parts"]["projection"]["per_resolution"] == projection["per_resolution"]


def test_unmeasured_resolutions_are_interpolated_geometrically_or_take_the_nearest():
    rates = load_tool("accelerator_check").interpolated_rates(
        {16: 8000.0, 64: 2000.0, 1024: 100.0}, [4, 8, 16, 32, 64, 128, 256, 512, 1024]
    )
    assert {r: source for r, (_, source) in rates.items()} == {
        4: "nearest",
        8: "nearest",
        16: "measured",
        32: "interpolated",
        64: "measured",
        128: "interpolated",
        256: "interpolated",
        512: "interpolated",
        1024: "measured",
    }
    assert rates[4][0] == rates[8][0] == 8000.0
    assert rates[32][0] == pytest.approx(4000.0, rel=1e-12)  # halfway in log2: the geometric mean
    assert rates[256][0] == pytest.approx(2000.0 * (100.0 / 2000.0) ** 0.5, rel=1e-12)
    assert rates[128][0] == pytest.approx(2000.0 * (100.0 / 2000.0) ** 0.25, rel=1e-12)


def test_the_gpu_check_fits_in_seven_minutes_and_has_every_part_the_issue_lists():
    budgets = load_tool("accelerator_check").BUDGETS
    assert sum(seconds for _, seconds in budgets) == 7 * 60
    assert [name for name, _ in budgets] == [
        "env",
        "step_bf16_64",
        "step_bf16_256",
        "step_bf16_16",
        "step_f32_256",
        "step_bf16_1024",
        "train",
        "tests",
        "projection",
    ]
