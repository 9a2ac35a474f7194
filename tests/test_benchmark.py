"""Speed work: the benchmark tool on a tiny recipe, the FLOP model and the schedule projection."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from pggan.benchmarks import profile as op_profile
from pggan.model import flops as model_flops
from pggan.model import networks
from pggan.training import run_length
from pggan.training.validation import plan_run
from tests import tool_support
from tests.run_support import REPO, load_recipe, subprocess_env


def _run_tool(monkeypatch, *args):
    """The tool's main() in this process; --config.<field> overrides are read from sys.argv."""
    tool_support.run_main("benchmark", *args, monkeypatch=monkeypatch)


# ------------------------------------------------------------------------------------ FLOP model

# docs/flop_model.md, full-width official networks: G forward ~ D forward per image (GFLOP) with the
# naive and the fused resampling forms, and GFLOP of a training iteration per image.
FLOP_TABLE = {  # res: (fwd fused, fwd naive, iteration fused, iteration naive)
    8: (0.52, 0.69, 9.4, 12.4),
    16: (2.27, 3.10, 41, 56),
    32: (9.25, 12.8, 167, 230),
    64: (18.4, 27.3, 331, 491),
    128: (27.5, 41.8, 495, 752),
    256: (36.7, 56.3, 660, 1013),
    512: (45.8, 70.8, 824, 1274),
    1024: (55.0, 85.4, 990, 1536),
}


@pytest.mark.parametrize("resolution", sorted(FLOP_TABLE))
def test_analytic_flops_reproduce_the_flop_table(resolution):
    fused = networks.ModelSpec(upsample_impl="transposed", downsample_impl="strided")
    naive = networks.ModelSpec()
    fwd_fused, fwd_naive, it_fused, it_naive = FLOP_TABLE[resolution]
    for spec, fwd, iteration in ((fused, fwd_fused, it_fused), (naive, fwd_naive, it_naive)):
        for fn in (model_flops.generator_forward_flops, model_flops.discriminator_forward_flops):
            assert fn(spec, resolution) / 1e9 == pytest.approx(fwd, rel=0.01, abs=0.01)
        assert model_flops.iteration_flops_per_image(spec, resolution) / 1e9 == pytest.approx(iteration, rel=0.01)


def test_generator_flops_count_every_layer_of_a_small_model():
    # Hand count, resolution 8, fmap_base 64 -> channels nf(1) = 32, nf(2) = 16; latent 4; RGB.
    spec = networks.ModelSpec(resolution=8, latent_size=4, fmap_base=64, fmap_max=32)
    dense = 2 * 4 * 16 * 32
    conv4 = 2 * 9 * 32 * 32 * 16
    up8 = 2 * 9 * 32 * 16 * 64
    conv8 = 2 * 9 * 16 * 16 * 64
    rgb = 2 * 16 * 3 * 64 + 2 * 32 * 3 * 16
    assert model_flops.generator_forward_flops(spec, 8) == dense + conv4 + up8 + conv8 + rgb


def test_flop_model_mode_projects_the_performance_targets(tmp_path, monkeypatch):
    out = tmp_path / "flop.json"
    _run_tool(
        monkeypatch,
        "--flop_model",
        f"--config={REPO}/configs/celebahq_1024.py",
        "--peak_tflops=800",
        "--utilisation=0.4",
        "--devices=1",
        "--config.model.upsample_impl=transposed",
        "--config.model.downsample_impl=strided",
        f"--json={out}",
    )
    result = json.loads(out.read_text())
    # docs/flop_model.md: ideal img/s on one H100 at 40% of 800 TFLOP/s, and ~6.0e18 FLOP in all.
    for resolution, ideal in {4: 212e3, 8: 34e3, 16: 7.8e3, 32: 1.9e3, 64: 967, 128: 646, 256: 485, 512: 388}.items():
        assert result["img_per_s"][str(resolution)] == pytest.approx(ideal, rel=0.02)
    assert result["total_flops"] == pytest.approx(6.0e18, rel=0.01)
    assert sum(e["images"] for e in result["projection"]["per_resolution"].values()) == pytest.approx(12e6, rel=1e-3)


# ------------------------------------------------------------------------------------ projection


def _brute_force_stages(schedule):
    """The training loop's own bookkeeping, one round at a time."""
    total, nimg, stages = round(schedule.total_kimg * 1000), 0, []
    while nimg < total:
        phase = schedule.at(nimg)
        images = phase.minibatch * schedule.d_steps_per_round
        if stages and stages[-1][:2] == [phase.resolution, phase.minibatch]:
            stages[-1][2] += images
            stages[-1][3] += 1
        else:
            stages.append([phase.resolution, phase.minibatch, images, 1])
        nimg += images
    return [tuple(s) for s in stages]


def test_projection_replays_the_schedule_round_by_round():
    config = load_recipe("quickstart")
    schedule = plan_run(config, jax.devices()[:1]).schedule
    stages = run_length.images_per_resolution(schedule)
    assert [dataclasses.astuple(s) for s in stages] == _brute_force_stages(schedule)
    config.schedule.minibatch = {8: 32, 16: 8}  # uneven rounds, overshooting phase boundaries
    schedule = plan_run(config, jax.devices()[:1]).schedule
    stages = run_length.images_per_resolution(schedule)
    assert [dataclasses.astuple(s) for s in stages] == _brute_force_stages(schedule)
    wall = run_length.project_wall_time(stages, {4: 100.0, 8: 50.0, 16: 20.0, 32: 10.0}, {4: 1.0, 32: 2.0})
    expected = sum(s.images / {4: 100.0, 8: 50.0, 16: 20.0, 32: 10.0}[s.resolution] for s in stages)
    assert wall["train_s"] == pytest.approx(expected) and wall["compile_s"] == 3.0
    with pytest.raises(KeyError, match=r"\[32\]"):
        run_length.project_wall_time(stages, {4: 1.0, 8: 1.0, 16: 1.0})


# ------------------------------------------------------------------------------------ the tool


@pytest.mark.slow
def test_step_benchmark_runs_a_tiny_recipe_and_writes_json(tmp_path, monkeypatch):
    out = tmp_path / "step.json"
    _run_tool(
        monkeypatch,
        f"--config={REPO}/configs/tiny.py",
        "--resolutions=4",
        "--steps=2",
        "--peak_tflops=1",
        f"--json={out}",
    )
    result = json.loads(out.read_text())
    assert result["mode"] == "step" and result["num_devices"] == 8 and result["jax"] == jax.__version__
    (row,) = result["results"]
    spec = networks.ModelSpec.from_config(load_recipe("tiny").model)
    assert row["resolution"] == 4 and row["minibatch"] == 16 and row["microbatches"] == 1
    assert row["img_per_s"] > 0 and row["compile_s"] > 0 and row["memory_bytes_per_device"] > 0
    assert row["model_gflop_per_img"] == pytest.approx(model_flops.iteration_flops_per_image(spec, 4) / 1e9)
    # XLA counts the convolutions and dense layers plus elementwise work, per device, per image.
    assert 0.5 < row["xla_gflop_per_img"] / row["model_gflop_per_img"] < 3
    assert row["utilisation"] == pytest.approx(row["tflops"] / (1.0 * 8))
    assert result["projections"] == []  # 8 and 16 px not measured


def test_generation_benchmark_times_the_generator_at_each_resolution(tmp_path, monkeypatch):
    out = tmp_path / "generation.json"
    _run_tool(monkeypatch, f"--config={REPO}/configs/tiny.py", "--generation", "--resolutions=4,16", f"--json={out}")
    result = json.loads(out.read_text())
    assert result["mode"] == "generation" and result["num_devices"] == 8
    assert [(row["resolution"], row["batch_size"]) for row in result["results"]] == [(4, 64), (16, 64)]
    assert all(row["img_per_s"] > 0 and row["compile_s"] > 0 for row in result["results"])


def test_step_benchmark_profiles_a_round_per_op_kind(tmp_path, monkeypatch, capsys):
    _run_tool(
        monkeypatch,
        f"--config={REPO}/configs/tiny.py",
        "--resolutions=4",
        "--steps=2",
        "--windows=1",
        f"--profile_dir={tmp_path}",
        f"--json={tmp_path / 'step.json'}",
    )
    (trace,) = tmp_path.glob("4px_0_naive_naive/**/*.xplane.pb")
    times = op_profile.op_kind_times(str(trace))
    kinds = {t.kind for t in times}
    # The round's convolutions and the cross-device gradient mean are ops of their own; nothing is a container.
    assert "convolution" in kinds and "all-reduce" in kinds
    assert not any("ThunkExecutor" in k or re.search(r"\.\d+$", k) for k in kinds)
    assert sum(t.share for t in times) == pytest.approx(1.0)
    assert [t.seconds for t in times] == sorted((t.seconds for t in times), reverse=True)
    printed = capsys.readouterr()
    assert "XLA time per op kind, one round at 4x4" in printed.out + printed.err


@pytest.mark.slow
def test_benchmark_errors_are_one_line():
    env = subprocess_env()
    for args, message in (
        ((f"--config={REPO}/configs/tiny.py", "--resolutions=64"), "not trained by this recipe"),
        ((f"--config={REPO}/configs/tiny.py", "--batch=6"), "--batch=6 must split"),
        (("--flop_model",), "--config is required"),
    ):
        result = subprocess.run(
            [sys.executable, os.path.join(REPO, "tools", "benchmark.py"), *args, "--json="],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert result.returncode == 1, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1].startswith("error: ") and message in result.stderr
        assert "Traceback" not in result.stderr


def test_benchmark_runs_without_the_data_and_media_stack():
    # The GPU machines have JAX, flax, optax and orbax only: the benchmark, the step and the config
    # checks must not import tfds, grain, array_record, PIL or imageio (the input and quality modes
    # import what they need when chosen).
    blocked = ("tensorflow_datasets", "grain", "array_record", "PIL", "imageio_ffmpeg", "imageio")
    script = (
        f"import runpy, sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
        f"sys.argv = ['benchmark.py', '--flop_model', '--config={REPO}/configs/tiny.py', '--peak_tflops=1', "
        f"'--json=']\nrunpy.run_path('{REPO}/tools/benchmark.py', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env(), timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "whole schedule:" in result.stdout


def test_real_floor_scores_real_halves_and_a_resample_against_the_reals(tmp_path, monkeypatch, tiny_data_dir):
    def floor(json_name):
        out = tmp_path / json_name
        _run_tool(
            monkeypatch,
            f"--config={REPO}/configs/tiny.py",
            f"--config.dataset.data_dir={tiny_data_dir}",
            "--real_floor",
            "--seeds=0,1",
            f"--json={out}",
        )
        return json.loads(out.read_text())

    result = floor("floor.json")
    assert result["mode"] == "real_floor" and result["num_reals"] == 64
    assert [(r["kind"], r["seed"]) for r in result["runs"]] == [
        ("halves", 0),
        ("resampled", 0),
        ("halves", 1),
        ("resampled", 1),
    ]
    for kind in ("halves", "resampled"):
        scores = [r["swd_avg"] for r in result["runs"] if r["kind"] == kind]
        assert all(s > 0 for s in scores) and scores[0] != scores[1]  # each seed draws its own split
        assert result["summary"][kind]["mean"] == pytest.approx(np.mean(scores))
        assert result["summary"][kind]["std"] == pytest.approx(np.std(scores, ddof=1))
    # 16x16 images: SWD at 16 px only, and the average is that level.
    assert all(r["swd_avg"] == r["swd_16"] for r in result["runs"])
    assert floor("again.json")["runs"] == result["runs"]  # the seeds fix the splits and the SWD projections


@pytest.mark.slow  # a whole tiny training run
def test_quality_mode_trains_only_the_chosen_dtype_and_scores_its_final_generator(tmp_path, monkeypatch, tiny_data_dir):
    from pggan.benchmarks import quality

    def quality_run(json_name):
        out = tmp_path / json_name
        _run_tool(
            monkeypatch,
            f"--config={REPO}/configs/tiny.py",
            f"--config.dataset.data_dir={tiny_data_dir}",
            "--quality",
            "--dtype=f32",
            "--seeds=3",
            f"--runs_dir={tmp_path / 'runs'}",
            f"--json={out}",
        )
        return json.loads(out.read_text())

    result = quality_run("quality.json")
    (row,) = result["runs"]
    assert (row["dtype"], row["seed"]) == ("float32", 3) and "bf16_passes" not in result
    assert set(result["summary"]) == {"float32"} and result["summary"]["float32"]["mean"] == row["swd_avg"]
    # The score is the final EMA generator's, at 16 px, against every real image of the tiny set.
    config = load_recipe("tiny")
    config.dataset.data_dir = tiny_data_dir
    assert quality.final_swd(config, str(tmp_path / "runs" / "float32_seed3")) == {
        k: v for k, v in row.items() if k.startswith("swd")
    }
    again = quality_run("again.json")["runs"][0]  # the finished run is reused, not trained again
    assert again["swd_avg"] == row["swd_avg"] and again["seconds"] < row["seconds"]
