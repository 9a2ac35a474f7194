"""Loss / penalty / D-normalization combinations train; lazy penalties, SN state and TTUR resume exactly;
class-conditional digits train end to end and sample by class with tools/generate.py --label."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from pggan import checkpoint, parallel
from pggan.model import losses, networks, normalization
from pggan.sampling import latent_space, media
from pggan.training import defaults, landscape, loop, train_step, validation
from pggan.training.step_updates import HostBatches, RoundScalars, summarize_metrics
from tests import tool_support
from tests.run_support import REPO, load_recipe

pytestmark = pytest.mark.slow  # a training run per loss setting

SPEC = networks.ModelSpec(resolution=8, latent_size=8, fmap_base=32, fmap_max=8)
MINIBATCH, REPEATS, ROUNDS = 16, 4, 4  # 4 rounds of 4 minibatches of 16: 256 images per combination


def _settings(name):
    config = landscape.apply(defaults.default_config(), name)
    return losses.LossConfig.from_config(config.loss), normalization.NormalizationConfig.from_config(
        config.d_normalization
    )


def _round_inputs(round_index, mesh):
    rng = np.random.default_rng(round_index)
    images = rng.integers(0, 256, (REPEATS, MINIBATCH, 4, 4, 3), dtype=np.uint8)
    order = parallel.device_major_order(MINIBATCH, mesh.size)
    sharding = parallel.batch_sharded(mesh, 1)
    return jax.device_put(images[:, order], sharding), jax.device_put(
        np.zeros((REPEATS, MINIBATCH), np.int32), sharding
    )


# Every loss, every penalty (R1 alone runs inside r1r2; sn and gran run without penalties, as 'none' does)
# and every D normalization, each compiled once: a compile costs ~10 s of CPU, too much for all 22
# combinations here; docs/loss_comparison.md trains ten of them with real budgets.
COVERING = ("wgan_gp", "logistic_r1lazy", "lsgan_sn", "hinge_gran", "logistic_gp0", "logistic_r1r2")


def test_the_trained_combinations_cover_every_loss_and_regularizer():
    parsed = [landscape.parse(name) for name in COVERING]
    assert {loss for loss, _, _ in parsed} == set(losses.LOSSES)  # mmd trains in test_stability_training.py
    # clipping (with RMSProp) trains in test_stability_training.py
    assert {reg for _, reg, _ in parsed} == set(landscape.REGULARIZERS) - {"r1", "none", "clip"}
    assert set(COVERING) <= set(landscape.COMBINATIONS)


def test_stability_modes_write_their_settings_and_make_valid_configs():
    base = load_recipe("loss_comparison")
    for name in landscape.COMBINATIONS + landscape.STABILITY:
        validation.plan_run(landscape.apply(base, name), jax.devices()[:1])  # every one is a valid run
    clip = landscape.apply(base, "wgan_clip")
    assert (clip.d_normalization.method, clip.optimizer.name, clip.schedule.d_repeats) == ("clip", "rmsprop", 5)
    assert clip.schedule.g_lr_base == clip.schedule.d_lr_base == 5e-5 and clip.loss.gp_lambda == 0.0
    mmd = landscape.apply(base, "mmd_gp")
    assert (mmd.loss.name, mmd.loss.gp_lambda, mmd.loss.drift, mmd.model.critic_size) == ("mmd", 1.0, 0.0, 16)
    both = landscape.apply(base, "logistic_r1+oadam+extragrad+dat+ada")
    loss, optimizer, augment = both.loss, both.optimizer, both.augment
    assert (loss.name, loss.r1_gamma, loss.dat_epsilon, loss.dat_steps) == ("logistic", 1.0, 0.01, 1)
    assert (optimizer.name, optimizer.optimism, optimizer.extragradient) == ("optimistic_adam", 1.0, True)
    assert (augment.policy, augment.probability, augment.target) == ("ada", 0.0, 0.6)
    assert landscape.apply(base, "logistic_r1+bgc").augment.policy == "bgc"
    diff = landscape.apply(base, "hinge_sn+diffaugment").augment
    assert (diff.policy, diff.probability, diff.target) == ("diffaugment", 1.0, 0.0)
    plain = landscape.apply(both, "logistic_r1")  # a combination without modes leaves the config's own settings
    assert plain.optimizer.name == "optimistic_adam" and plain.augment.policy == "ada"
    assert landscape.apply(clip, "logistic_r1").d_normalization.method == "none"
    for name, message in (
        ("mmd_r1", "the mmd loss takes the regularizers"),
        ("mmd_gp+dat", "DAT (+dat) does not apply to the mmd loss"),
        ("logistic_r1+adam", "modes must be distinct ones of"),
        ("logistic_r1+ada+diffaugment", "choose one augmentation"),
        ("logistic_r1+bgc+ada", "choose one augmentation"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            landscape.parse(name)


def test_gp_is_the_papers_for_wgan_and_lambda_one_without_drift_for_the_other_losses():
    official = landscape.apply(defaults.default_config(), "wgan_gp").loss
    assert (official.name, official.gp_lambda, official.gp_target, official.drift) == ("wgan", 10.0, 1.0, 0.001)
    for loss in ("logistic", "lsgan", "hinge"):
        config = landscape.apply(defaults.default_config(), f"{loss}_gp").loss
        assert (config.name, config.gp_lambda, config.gp_target, config.drift) == (loss, 1.0, 1.0, 0.0)
        assert config.r1_gamma == config.r2_gamma == config.gp0_lambda == 0.0


def test_gran_uses_the_drift_term_with_wgan_only():
    for loss in losses.LOSSES:
        config = landscape.apply(defaults.default_config(), f"{loss}_gran")
        assert config.d_normalization.method == "gran"
        assert config.loss.drift == (landscape.WGAN_GRAN_DRIFT if loss == "wgan" else 0.0)
        assert config.loss.gp_lambda == config.loss.r1_gamma == config.loss.gp0_lambda == 0.0


def test_wgan_with_gran_and_too_little_drift_is_a_known_failure_naming_the_fix():
    for name, drift, warned in (
        ("wgan_gran", None, False),
        ("wgan_gran", 0.0, True),
        ("wgan_gran", 0.001, True),
        ("hinge_gran", None, False),
        ("wgan_sn", None, False),
        ("wgan_gp", 0.0, False),
    ):
        config = landscape.apply(defaults.default_config(), name)
        if drift is not None:
            config.loss.drift = drift
        if name == "wgan_gp":  # measured without penalties only: a GP on top is not warned about
            config.d_normalization.method = "gran"
        typed = validation.plan_run(config, jax.devices()[:1]).config  # valid settings
        messages = validation.known_failures(typed.loss, typed.d_normalization)
        assert len(messages) == int(warned), (name, drift, messages)
        if warned:
            assert f"loss.drift={drift:g}" in messages[0] and messages[0].endswith("--config.loss.drift=0.01")


@pytest.mark.parametrize("name", COVERING)
def test_combination_trains_without_nonfinite_values(name):
    loss, norm = _settings(name)
    mesh = parallel.make_mesh(jax.devices()[:2])
    step = train_step.TrainStep.create(
        SPEC, loss, train_step.StepConfig(minibatch_repeats=REPEATS, normalization=norm), mesh
    )
    state = step.init_state(0)
    initial_u = jax.device_get(state.get(normalization.STATE_ITEM))
    total = None
    for round_index in range(ROUNDS):
        images, labels = _round_inputs(round_index, mesh)
        scalars = RoundScalars(
            jnp.float32(1), jnp.float32(2e-3), jnp.float32(2e-3), jnp.float32(0.9), jax.random.key(round_index)
        )
        state, sums = step.round_fn(4, MINIBATCH)(state, HostBatches(images, labels), scalars, round_index=round_index)
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    means, skipped = summarize_metrics(total)
    assert skipped == {"skipped_d": 0, "skipped_g": 0}
    assert all(np.isfinite(v) for v in means.values()), means
    for leaf in jax.tree.leaves(state):
        assert np.isfinite(np.asarray(leaf)).all()
    sums = jax.device_get(total)
    assert sums["d_steps"] == sums["g_steps"] == ROUNDS * REPEATS
    expected_penalty_steps = {0: 0, 1: ROUNDS * REPEATS}[loss.has_gradient_penalty]
    if loss.lazy:  # run-wide D steps 0, k, 2k, ... of the 16
        expected_penalty_steps = len(range(0, ROUNDS * REPEATS, loss.reg_interval))
    assert sums["penalty_steps"] == expected_penalty_steps
    if norm.method == "spectral":  # u moved (where it has more than one entry), and stayed unit vectors
        for before, after in zip(jax.tree.leaves(initial_u), jax.tree.leaves(state[normalization.STATE_ITEM])):
            assert before.size == 1 or np.abs(np.asarray(after) - before).max() > 1e-4
            assert np.linalg.norm(np.asarray(after)) == pytest.approx(1.0, abs=1e-5)


def test_lazy_penalty_steps_follow_the_run_wide_d_step_index():
    loss = losses.LossConfig(r1_gamma=1.0, reg_interval=3)
    mesh = parallel.make_mesh(jax.devices()[:1])
    step = train_step.TrainStep.create(SPEC, loss, train_step.StepConfig(minibatch_repeats=4, d_repeats=2), mesh)
    # 8 D steps per round: run-wide indices 0..7, 8..15, ...; a penalty step after multiples of 3.
    assert step.penalty_pattern(0, 0, 4) == (True, False, False, True, False, False, True, False)
    assert step.penalty_pattern(1, 0, 4) == (False, True, False, False, True, False, False, True)
    # A round split into calls of one repeat sees the same D steps.
    split = sum((step.penalty_pattern(1, r, 1) for r in range(4)), ())
    assert split == step.penalty_pattern(1, 0, 4)
    eager = train_step.TrainStep.create(SPEC, losses.LossConfig(), train_step.StepConfig(), mesh)
    assert eager.penalty_pattern(5, 0, 4) == ()


def _ttur_config(data_dir, **schedule):
    config = load_recipe("tiny")
    config.dataset.data_dir = data_dir
    config.model.resolution = 8
    config.schedule.update(
        {"stabilize_kimg": 0.064, "transition_kimg": 0.064, "total_kimg": 0.192, "g_repeats": 2, **schedule}
    )
    config.optimizer.update(g_beta1=0.5, d_beta2=0.9)
    config.schedule.d_lr_base = 0.002
    config.loss.update(name="hinge", gp_lambda=0.0, drift=0.0, r1_gamma=0.5, reg_interval=3)
    config.d_normalization.method = "spectral"
    return config


def test_spectral_norm_lazy_r1_and_ttur_resume_exactly(tmp_path):
    data_dir, devices = str(tmp_path / "data"), jax.devices()[:1]
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    loop.train_and_evaluate(_ttur_config(data_dir), whole, devices=devices)
    loop.train_and_evaluate(_ttur_config(data_dir, total_kimg=0.096), parts, devices=devices)  # stops mid-fade
    loop.train_and_evaluate(_ttur_config(data_dir), parts, devices=devices)
    with checkpoint.CheckpointReader(whole) as reader:
        config = json.loads(reader.meta(192)["config"])
    assert config["d_normalization"]["method"] == "spectral" and config["schedule"]["g_repeats"] == 2
    uninterrupted, resumed = _final_state(whole), _final_state(parts)
    assert set(resumed) == set(checkpoint.STATE_ITEMS) | {normalization.STATE_ITEM}
    for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    # Turning spectral normalization off in this workdir is refused (its state holds the vectors).
    config = _ttur_config(data_dir, total_kimg=0.256)
    config.d_normalization.method = "none"
    with pytest.raises(loop.TrainingError, match="different config.d_normalization.method"):
        loop.train_and_evaluate(config, parts, devices=devices)


def _final_state(workdir):
    """The latest checkpoint's state as NumPy, restored with the run's own step settings."""
    plan = validation.plan_run(_ttur_config(os.path.join(os.path.dirname(workdir), "data")), jax.devices()[:1])
    trainer = loop.Trainer(plan, workdir)
    store = checkpoint.CheckpointStore(workdir)
    state, _ = store.restore(store.latest_step(), trainer.step.abstract_state())
    store.close()
    trainer.store.close()
    return jax.tree.map(np.asarray, state)


def test_conditional_digits_train_end_to_end_and_generate_by_label(tmp_path):
    config = load_recipe("tiny")
    config.dataset.update(name="digits", source="digits", data_dir=str(tmp_path / "data"))
    config.model.update(resolution=8, label_size=10)
    config.schedule.update(stabilize_kimg=0.064, transition_kimg=0.064, total_kimg=0.192)
    workdir = str(tmp_path / "run")
    loop.train_and_evaluate(config, workdir, devices=jax.devices()[:2])

    grids = {}
    for label in (3, 7):
        out = str(tmp_path / f"class{label}.png")
        assert (
            tool_support.run_main(
                "generate", f"--workdir={workdir}", "--grid=2x3", "--seed=4", f"--label={label}", f"--out={out}"
            )
            == 0
        )
        grids[label] = np.asarray(Image.open(out))
    # Independently: the trained EMA generator on the grid's latents with one-hot class 3.
    generator, meta = checkpoint.load_generator(workdir)
    assert meta["resolution"] == 8 and meta["nimg"] == 192
    latents = latent_space.grid_latents(4, 6, generator.spec.latent_size)
    onehot = np.eye(10, dtype=np.float32)[[3] * 6]
    expected = media.make_grid(media.to_uint8(generator(latents, onehot, resolution=8, alpha=meta["alpha"])), 2, 3)
    assert np.abs(grids[3].astype(int) - expected).max() <= 1  # rounding of float32 images on other devices
    assert np.abs(grids[3].astype(int) - grids[7]).mean() > 1.0  # the class changes the images


def test_summary_table_orders_by_mean_swd_and_reports_diverged_runs():
    def run(name, seed, swd, untrained=200.0, skipped=0):
        return {
            "combination": name,
            "seed": seed,
            "swd": swd,
            "untrained_swd": untrained,
            "finite": True,
            "skipped_d": skipped,
            "skipped_g": 0,
            "train_seconds": 10.0,
        }

    results = [
        run("wgan_gp", 0, 90.0),
        run("wgan_gp", 1, 80.0, skipped=2),
        run("hinge_sn", 0, 50.0),
        run("hinge_sn", 1, 250.0),
        run("lsgan_gp", 0, 60.0),
        {"combination": "lsgan_gp", "seed": 1, "finite": False, "train_seconds": 5.0, "error": "diverged"},
    ]
    lines = landscape.summary_table(results).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| wgan_gp", "| hinge_sn", "| lsgan_gp"]
    assert lines[2] == "| wgan_gp | 2 | 85.0 ± 5.0 | 200.0 | 2/2 | 2/0 | yes | 10 |"
    assert lines[3].startswith("| hinge_sn | 2 | 150.0 ± 100.0 | 200.0 | 1/2 |")
    assert "NO (1 diverged)" in lines[4]


def test_compare_losses_tool_trains_scores_and_rescores_a_finished_run(tmp_path, monkeypatch):
    outdir = tmp_path / "lc"
    args = (
        f"--config={REPO}/configs/tiny.py",
        f"--config.dataset.data_dir={tmp_path / 'data'}",
        f"--outdir={outdir}",
        "--combinations=wgan_gran",
        "--seeds=0",
        "--num_images=32",
        "--fast_compile",
    )
    assert tool_support.run_main("compare_losses", *args, monkeypatch=monkeypatch) == 0
    # A finished run is scored again without training: the same record.
    assert tool_support.run_main("compare_losses", *args, monkeypatch=monkeypatch) == 0
    first, again = [json.loads(line) for line in (outdir / "results.jsonl").read_text().splitlines()]
    assert first["combination"] == "wgan_gran" and first["seed"] == 0 and first["kimg"] == 0.768
    assert first["finite"] and first["skipped_d"] == first["skipped_g"] == 0
    assert np.isfinite(first["swd"]) and np.isfinite(first["untrained_swd"]) and first["swd"] != first["untrained_swd"]
    del first["wall_seconds"], again["wall_seconds"]
    assert again == first
    saved = json.loads((outdir / "wgan_gran" / "seed0" / "config.json").read_text())
    assert saved["loss"]["drift"] == landscape.WGAN_GRAN_DRIFT and saved["d_normalization"]["method"] == "gran"
    assert (outdir / "summary.md").read_text().splitlines()[2].startswith("| wgan_gran | 1 | ")


def test_compare_losses_tool_runs_modes_and_the_small_data_protocol(tmp_path, monkeypatch):
    """Trained on the first 16 of the 64 images, scored against all 64; ADA's final p recorded."""
    outdir = tmp_path / "few"
    args = (
        f"--config={REPO}/configs/tiny.py",
        f"--config.dataset.data_dir={tmp_path / 'data'}",
        f"--outdir={outdir}",
        "--combinations=logistic_r1+ada",
        "--seeds=0",
        "--max_images=16",
        "--num_images=0",
        "--fast_compile",
    )
    assert tool_support.run_main("compare_losses", *args, monkeypatch=monkeypatch) == 0
    (result,) = [json.loads(line) for line in (outdir / "results.jsonl").read_text().splitlines()]
    assert (result["combination"], result["max_images"], result["num_reals"]) == ("logistic_r1+ada", 16, 64)
    assert result["finite"] and np.isfinite(result["swd"]) and result["swd"] != result["untrained_swd"]
    workdir = outdir / "logistic_r1+ada" / "images16" / "seed0"
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["dataset"]["max_images"] == 16 and saved["loss"]["r1_gamma"] == 1.0
    assert saved["augment"] | {"policy": "ada"} == {
        "policy": "ada",
        "probability": 0.0,
        "target": 0.6,
        "speed_kimg": landscape.ADA_SPEED_KIMG,
        "interval": 4,
    }
    # p moves in steps of interval * minibatch / (1000 * speed_kimg) from 0, within [0, 1]
    step = 4 * saved["schedule"]["minibatch_base"] / (1000 * landscape.ADA_SPEED_KIMG)
    assert 0.0 <= result["augment_p"] <= 1.0
    assert result["augment_p"] / step == pytest.approx(round(result["augment_p"] / step), abs=1e-3)
    assert (outdir / "summary.md").read_text().splitlines()[2].startswith("| logistic_r1+ada, 16 images | 1 | ")


def test_compare_losses_tool_errors_are_one_line(tmp_path, capsys):
    for args, message in (
        (("--combinations=wgan_gp",), "--outdir is required"),
        ((f"--outdir={tmp_path}", "--combinations=wgan_dropout"), "unknown combination 'wgan_dropout'"),
        ((f"--outdir={tmp_path}", "--combinations=mmd_gp+dat"), "DAT (+dat) does not apply to the mmd loss"),
        ((f"--outdir={tmp_path}", "--seeds=a"), "--seeds must be non-negative integers"),
        ((f"--outdir={tmp_path}", "--max_images=-5"), "--max_images must be non-negative integers"),
    ):
        assert tool_support.run_main("compare_losses", *args) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err
