"""Metrics during training: a tiny run evaluates SWD at every stage end and every N kimg, and reports it."""

import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from pggan import checkpoint, evaluation, metrics, parallel
from pggan.data import config as data_config
from pggan.model import networks
from pggan.training import loop, train_state
from pggan.training.config import ConfigError, TrainingConfig
from pggan.training.periodic_metrics import TrainingMetrics
from pggan.training.schedule import Phase
from pggan.training.writers import RunWriter
from tests.run_support import load_recipe

pytestmark = pytest.mark.slow  # multi-stage training runs with metrics


def _tensorboard_scalars(logdir: str) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of every scalar in the event files (TFRecord framing of Event protos)."""
    scalars = {}
    for name in sorted(os.listdir(logdir)):
        with open(os.path.join(logdir, name), "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4  # length, its CRC, the event, its CRC
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def _config(data_dir: str, **metrics):
    config = load_recipe("tiny")
    config.dataset.data_dir = data_dir
    config.metrics.update({"names": ("swd",), "num_images": 16, "batch_size": 16, **metrics})
    return config


def test_tiny_run_reports_swd_at_stage_ends_and_every_n_kimg(tmp_path, monkeypatch):
    monkeypatch.setenv("PGGAN_CACHE_DIR", str(tmp_path / "cache"))
    workdir = str(tmp_path / "run")
    config = _config(str(tmp_path / "datasets"), at_stage_end=True, every_kimg=0.256)
    loop.train_and_evaluate(config, workdir)

    records = evaluation.read_records(workdir)
    with checkpoint.CheckpointReader(workdir) as reader:
        stage_ends = reader.stage_final_steps()
    assert len(stage_ends) == 3
    # Rounds of 32 images: multiples of 256 are reached exactly; 768 is also the last stage end (once).
    assert [r["step"] for r in records] == sorted(set(stage_ends) | {256, 512, 768})
    by_step = {r["step"]: r for r in records}
    assert [by_step[s]["resolution"] for s in stage_ends] == [4, 8, 16]
    for r in records:
        assert (r["source"], r["network"], r["metric_resolution"], r["reals"]) == ("training", "ema", 16, "synthetic16")
        assert r["details"] == {"swd": {"num_reals": 16, "num_fakes": 16}}
        assert sorted(r["metrics"]) == ["swd_16", "swd_avg"] and np.isfinite(r["metrics"]["swd_avg"])
    # Mid fade-in to 16x16: evaluated at the alpha of the last round (it started at 480 images), as saved.
    assert by_step[512]["alpha"] == pytest.approx(0.75)

    scalars = _tensorboard_scalars(os.path.join(workdir, "tensorboard"))
    for name in ("swd_16", "swd_avg"):
        assert scalars[f"metrics/{name}"] == pytest.approx(
            {s: r["metrics"][name] for s, r in by_step.items()}, rel=1e-6
        )

    # The trainer and tools/evaluate.py measure the same thing: the kept 8x8 checkpoint, evaluated again.
    dataset = data_config.open_from_config(config.dataset, resolution=16)
    evaluator = evaluation.Evaluator(dataset, ("swd",), num_images=16, batch_size=16)
    again = evaluation.evaluate_checkpoint(evaluator, workdir, stage_ends[1])
    assert again["metrics"] == pytest.approx(by_step[stage_ends[1]]["metrics"], rel=1e-5)


def _phase(resolution):
    return Phase(
        kimg=0.0,
        lod=0.0,
        resolution=resolution,
        alpha=1.0,
        minibatch=16,
        g_lr=1e-3,
        d_lr=1e-3,
        tick_kimg=1.0,
        ema_beta=0.999,
    )


def test_a_failed_evaluation_is_logged_and_training_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("PGGAN_CACHE_DIR", str(tmp_path / "cache"))
    config = TrainingConfig.parse(_config(str(tmp_path / "datasets")))
    dataset = data_config.open_from_config(config.dataset, resolution=16)
    workdir = str(tmp_path / "run")
    writer = RunWriter(workdir)
    metrics = TrainingMetrics(config.metrics, config.model, dataset, workdir, writer, parallel.make_mesh())
    generator, _ = networks.build_networks(config.model, seed=0)
    params = networks.parameters(generator)
    collapsed = jax.tree.map(jnp.zeros_like, params)  # every image the same flat grey
    metrics.evaluate(collapsed, train_state.Progress(nimg=100, phase=_phase(16)))
    assert evaluation.read_records(workdir) == [] and metrics.seconds > 0
    metrics.evaluate(params, train_state.Progress(nimg=200, phase=_phase(16)))
    writer.close()
    assert [r["step"] for r in evaluation.read_records(workdir)] == [200]


def test_metrics_settings_are_validated(tmp_path):
    for fields, message in (
        ({"names": ("swd", "lpips")}, "config.metrics.names: unknown metrics"),
        ({"num_images": 4}, "config.metrics.num_images must be >= 10"),
        ({"every_kimg": -1.0}, "config.metrics.every_kimg must be >= 0"),
    ):
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            TrainingConfig.parse(_config(str(tmp_path), **fields))
    # The command-line form of a list: --config.metrics.names=swd,ms_ssim arrives as ('swd,ms_ssim',).
    assert metrics.parse_metric_names(("swd,ms_ssim",)) == ("swd", "ms_ssim")
