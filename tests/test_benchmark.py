"""Speed work: the benchmark tool on a tiny recipe, the FLOP model, the schedule projection,
bfloat16 vs float32 steps, and gradient accumulation over microbatches."""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pggan import parallel

from pggan.model import layers, losses, networks, normalization

from pggan.training import compilation_cache, microbatching, train_step
from pggan.benchmarks import model_flops, projection
from pggan.training.step_updates import HostBatches, RoundScalars
from pggan.training.config import ConfigError
from pggan.training.validation import plan_run
from tests import tool_support
from tests.run_support import REPO



def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(name):
    return _load(f"{name}_config", f"configs/{name}.py").get_config()


def _run_tool(monkeypatch, *args):
    """The tool's main() in this process; --config.<field> overrides are read from sys.argv."""
    tool_support.run_main("benchmark", *args, monkeypatch=monkeypatch)


# ------------------------------------------------------------------------------------ FLOP model

# PERFORMANCE.md, full-width official networks: G forward ~ D forward per image (GFLOP) with the
# naive and the fused resampling forms, and GFLOP of a training iteration per image.
PERFORMANCE_TABLE = {  # res: (fwd fused, fwd naive, iteration fused, iteration naive)
    8: (0.52, 0.69, 9.4, 12.4), 16: (2.27, 3.10, 41, 56), 32: (9.25, 12.8, 167, 230), 64: (18.4, 27.3, 331, 491),
    128: (27.5, 41.8, 495, 752), 256: (36.7, 56.3, 660, 1013), 512: (45.8, 70.8, 824, 1274),
    1024: (55.0, 85.4, 990, 1536)}


@pytest.mark.parametrize("resolution", sorted(PERFORMANCE_TABLE))
def test_analytic_flops_reproduce_the_performance_table(resolution):
    fused = networks.ModelSpec(upsample_impl="transposed", downsample_impl="strided")
    naive = networks.ModelSpec()
    fwd_fused, fwd_naive, it_fused, it_naive = PERFORMANCE_TABLE[resolution]
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
    _run_tool(monkeypatch, "--flop_model", f"--config={REPO}/configs/celebahq_1024.py", "--peak_tflops=800",
              "--utilisation=0.4", "--devices=1", "--config.model.upsample_impl=transposed",
              "--config.model.downsample_impl=strided", f"--json={out}")
    result = json.loads(out.read_text())
    # PERFORMANCE.md: ideal img/s on one H100 at 40% of 800 TFLOP/s, and ~6.0e18 FLOP in all.
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
    config = _config("quickstart")
    schedule = plan_run(config, jax.devices()[:1]).schedule
    stages = projection.images_per_resolution(schedule)
    assert [dataclasses.astuple(s) for s in stages] == _brute_force_stages(schedule)
    config.schedule.minibatch = {8: 32, 16: 8}  # uneven rounds, overshooting phase boundaries
    schedule = plan_run(config, jax.devices()[:1]).schedule
    stages = projection.images_per_resolution(schedule)
    assert [dataclasses.astuple(s) for s in stages] == _brute_force_stages(schedule)
    wall = projection.project_wall_time(stages, {4: 100.0, 8: 50.0, 16: 20.0, 32: 10.0}, {4: 1.0, 32: 2.0})
    expected = sum(s.images / {4: 100.0, 8: 50.0, 16: 20.0, 32: 10.0}[s.resolution] for s in stages)
    assert wall["train_s"] == pytest.approx(expected) and wall["compile_s"] == 3.0
    with pytest.raises(KeyError, match=r"\[32\]"):
        projection.project_wall_time(stages, {4: 1.0, 8: 1.0, 16: 1.0})


# ------------------------------------------------------------------------------------ microbatches

def test_microbatch_count_keeps_whole_stddev_groups():
    assert microbatching.microbatch_count(16, None, 4) == 1
    assert microbatching.microbatch_count(16, 16, 4) == 1
    assert microbatching.microbatch_count(16, 8, 4) == 2
    assert microbatching.microbatch_count(16, 5, 4) == 4  # 4 groups of 4: microbatches of 4
    assert microbatching.microbatch_count(24, 10, 4) == 3  # 6 groups: 3 microbatches of 8
    assert microbatching.microbatch_count(6, 1, 1) == 6  # no stddev layer: single images
    with pytest.raises(ValueError, match=r"possible microbatch sizes: \[4, 8, 16\]"):
        microbatching.microbatch_count(16, 3, 4)


@pytest.mark.accelerator
def test_split_microbatches_reproduce_the_minibatch_stddev_of_the_whole_batch():
    x = jax.random.normal(jax.random.key(0), (24, 2, 2, 3))
    whole = layers.minibatch_stddev(x, 4)[..., -1]  # [24, 2, 2]: the statistic each row sees
    parts = microbatching.split(x, 3, 4)
    rows = microbatching.split(jnp.arange(24), 3, 4)
    for part, ids in zip(parts, rows):
        np.testing.assert_allclose(layers.minibatch_stddev(part, 4)[..., -1], whole[np.asarray(ids)], rtol=1e-6)
    assert sorted(np.asarray(rows).ravel().tolist()) == list(range(24))


def test_impossible_microbatch_setting_is_a_config_error():
    config = _config("tiny")
    config.schedule.max_microbatch_per_device = {16: 3}
    with pytest.raises(ConfigError, match=r"max_microbatch_per_device\[16\].*possible microbatch sizes"):
        plan_run(config, jax.devices()[:1])


SPEC = networks.ModelSpec(resolution=8, latent_size=8, fmap_base=32, fmap_max=16)


def _one_round(spec, step_config, minibatch=16, resolution=8, num_devices=1, loss=losses.LossConfig()):
    """(state before, state after, metric sums) of one round from seed 0 on fixed random reals (host arrays)."""
    mesh = parallel.make_mesh(jax.devices()[:num_devices])
    step = train_step.TrainStep.create(spec, loss, step_config, mesh)
    images = np.random.default_rng(0).integers(0, 256, (1, minibatch, resolution, resolution, 3), np.uint8)
    sharding = parallel.batch_sharded(mesh, 1)
    order = parallel.device_major_order(minibatch, num_devices)
    data = HostBatches(jax.device_put(images[:, order], sharding),
                       jax.device_put(np.zeros((1, minibatch), np.int32), sharding))
    scalars = RoundScalars(jnp.float32(0.7), jnp.float32(1e-3), jnp.float32(1e-3), jnp.float32(0.9), jax.random.key(3))
    before = jax.device_get(step.init_state(0))
    after, sums = step.round_fn(resolution, minibatch)(step.init_state(0), data, scalars)
    return before, jax.device_get(after), {k: float(v) for k, v in sums.items()}


# The paper's WGAN-GP; and a logistic loss with lazy R1 (round 0's D step is followed by a penalty-only
# step) and a spectrally normalized D, whose power-iteration vectors are updated once per D step.
ACCUMULATED_SETTINGS = {
    "wgan_gp": (losses.LossConfig(), normalization.NormalizationConfig()),
    "logistic_r1lazy_spectral": (losses.LossConfig(name="logistic", gp_lambda=0.0, drift=0.0, r1_gamma=1.0,
                                                   reg_interval=4),
                                 normalization.NormalizationConfig(method="spectral")),
}


@pytest.mark.accelerator
@pytest.mark.parametrize("settings", ACCUMULATED_SETTINGS)
def test_gradient_accumulation_equals_the_full_batch(settings):
    loss, norm = ACCUMULATED_SETTINGS[settings]
    config = train_step.StepConfig(minibatch_repeats=1, mirror_augment=True, normalization=norm)
    _, full_state, full_sums = _one_round(SPEC, config, loss=loss)
    accumulated = dataclasses.replace(config, max_microbatch_per_device=((8, 4),))  # 16 images -> 4 x 4
    _, micro_state, micro_sums = _one_round(SPEC, accumulated, loss=loss)
    assert full_sums["penalty_steps"] == 1
    for name, value in full_sums.items():
        assert micro_sums[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    for a, b in zip(jax.tree.leaves(full_state), jax.tree.leaves(micro_state)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------ bfloat16

@pytest.mark.accelerator
def test_bfloat16_step_agrees_with_float32_to_bfloat16_tolerance():
    config = train_step.StepConfig(minibatch_repeats=1)
    before, f32_state, f32_sums = _one_round(SPEC, config)
    _, bf16_state, bf16_sums = _one_round(dataclasses.replace(SPEC, compute_dtype="bfloat16"), config)
    # Without the step's exact-bfloat16 compile option, d_loss was 8.73 vs 6.98 here (the gradient
    # penalty's input gradients 2.5x too small). Master weights and both Adam states stay float32.
    assert {x.dtype for x in jax.tree.leaves(bf16_state) if x.dtype.kind == "f"} == {np.dtype(np.float32)}
    for name in ("d_loss", "g_loss", "real_score", "fake_score", "gradient_penalty", "grad_norm"):
        assert bf16_sums[name] == pytest.approx(f32_sums[name], rel=0.05, abs=0.02), name
    # Adam's first step moves every weight by lr * g / |g|: the two steps move the weights alike
    # except where bfloat16 rounding flips the sign of a tiny gradient.
    def flat(state, network):
        return np.concatenate([np.ravel(x) for x in jax.tree.leaves(state[network])])

    for network in ("generator", "discriminator"):
        f32_update = flat(f32_state, network) - flat(before, network)
        bf16_update = flat(bf16_state, network) - flat(before, network)
        agree = np.mean(np.abs(bf16_update - f32_update) < 1e-4)
        assert agree > 0.9, network


# ------------------------------------------------------------------------------------ the tool

def test_step_benchmark_runs_a_tiny_recipe_and_writes_json(tmp_path, monkeypatch):
    out = tmp_path / "step.json"
    _run_tool(monkeypatch, f"--config={REPO}/configs/tiny.py", "--resolutions=4", "--steps=2", "--peak_tflops=1",
              f"--json={out}")
    result = json.loads(out.read_text())
    assert result["mode"] == "step" and result["num_devices"] == 8 and result["jax"] == jax.__version__
    (row,) = result["results"]
    spec = networks.ModelSpec.from_config(_config("tiny").model)
    assert row["resolution"] == 4 and row["minibatch"] == 16 and row["microbatches"] == 1
    assert row["img_per_s"] > 0 and row["compile_s"] > 0 and row["memory_bytes_per_device"] > 0
    assert row["model_gflop_per_img"] == pytest.approx(model_flops.iteration_flops_per_image(spec, 4) / 1e9)
    # XLA counts the convolutions and dense layers plus elementwise work, per device, per image.
    assert 0.5 < row["xla_gflop_per_img"] / row["model_gflop_per_img"] < 3
    assert row["utilisation"] == pytest.approx(row["tflops"] / (1.0 * 8))
    assert result["projections"] == []  # 8 and 16 px not measured


def test_benchmark_errors_are_one_line():
    env = {**os.environ, "PYTHONPATH": REPO}
    for args, message in (((f"--config={REPO}/configs/tiny.py", "--resolutions=64"), "not trained by this recipe"),
                          ((f"--config={REPO}/configs/tiny.py", "--batch=6"), "--batch=6 must split"),
                          (("--flop_model",), "--config is required")):
        result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "benchmark.py"), *args, "--json="],
                                capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 1, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1].startswith("error: ") and message in result.stderr
        assert "Traceback" not in result.stderr


def test_benchmark_runs_without_the_data_and_media_stack():
    # The GPU machines have JAX, flax, optax and orbax only: the benchmark, the step and the config
    # checks must not import tfds, grain, array_record, PIL or imageio (the input and quality modes
    # import what they need when chosen).
    blocked = ("tensorflow_datasets", "grain", "array_record", "PIL", "imageio_ffmpeg", "imageio")
    script = (f"import runpy, sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
              f"sys.argv = ['benchmark.py', '--flop_model', '--config={REPO}/configs/tiny.py', '--peak_tflops=1', "
              f"'--json=']\nrunpy.run_path('{REPO}/tools/benchmark.py', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "whole schedule:" in result.stdout


def test_compilation_cache_setting_and_the_environment_variable_precedence(tmp_path, monkeypatch):
    before = jax.config.jax_compilation_cache_dir
    try:
        monkeypatch.delenv(compilation_cache.ENV_VARIABLE, raising=False)
        assert compilation_cache.enable("") == before
        assert compilation_cache.enable(str(tmp_path / "jax")) == str(tmp_path / "jax")
        monkeypatch.setenv(compilation_cache.ENV_VARIABLE, str(tmp_path / "exported"))
        assert compilation_cache.enable(str(tmp_path / "other")) == str(tmp_path / "jax")  # left as it was
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
