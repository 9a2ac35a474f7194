"""The schedule against a transcription of the official TrainingSchedule and training loop."""

import math

import numpy as np
import pytest

from pggan.training.config import TrainingConfig
from pggan.training.defaults import default_config
from pggan.training.schedule import Schedule
from tests.run_support import load_recipe


def _schedule(config, resolution, num_devices):
    """The Schedule of a ConfigDict training config (parsed as the launcher parses it)."""
    typed = TrainingConfig.parse(config)
    return Schedule(typed.schedule, resolution, num_devices, ema=typed.ema)


def official_schedule(
    cur_nimg,
    resolution_log2,
    num_gpus,
    lod_initial_resolution=4,
    lod_training_kimg=600,
    lod_transition_kimg=600,
    minibatch_base=16,
    minibatch_dict=None,
    max_minibatch_per_gpu=None,
    lrate_dict=None,
    lrate_base=0.001,
    tick_kimg_dict=None,
    tick_kimg_base=160,
):
    """The official train.TrainingSchedule, transcribed statement by statement (numpy as in the original)."""
    minibatch_dict, max_minibatch_per_gpu = minibatch_dict or {}, max_minibatch_per_gpu or {}
    lrate_dict = lrate_dict or {}
    tick_kimg_dict = tick_kimg_dict or {4: 160, 8: 140, 16: 120, 32: 100, 64: 80, 128: 60, 256: 40, 512: 20, 1024: 10}
    kimg = cur_nimg / 1000.0
    phase_dur = lod_training_kimg + lod_transition_kimg
    phase_idx = int(np.floor(kimg / phase_dur)) if phase_dur > 0 else 0
    phase_kimg = kimg - phase_idx * phase_dur
    lod = resolution_log2
    lod -= np.floor(np.log2(lod_initial_resolution))
    lod -= phase_idx
    if lod_transition_kimg > 0:
        lod -= max(phase_kimg - lod_training_kimg, 0.0) / lod_transition_kimg
    lod = max(lod, 0.0)
    resolution = 2 ** (resolution_log2 - int(np.floor(lod)))
    minibatch = minibatch_dict.get(resolution, minibatch_base)
    minibatch -= minibatch % num_gpus
    if resolution in max_minibatch_per_gpu:
        minibatch = min(minibatch, max_minibatch_per_gpu[resolution] * num_gpus)
    return dict(
        lod=lod,
        resolution=resolution,
        minibatch=minibatch,
        lr=lrate_dict.get(resolution, lrate_base),
        tick_kimg=tick_kimg_dict.get(resolution, tick_kimg_base),
    )


OFFICIAL_PRESETS = {  # config.py: preset-v2-1gpu and preset-v2-8gpus, with the fp32 per-GPU cap
    1: dict(
        minibatch_base=4,
        minibatch_dict={4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4},
        lrate_dict={1024: 0.0015},
    ),
    8: dict(
        minibatch_base=32,
        minibatch_dict={4: 512, 8: 256, 16: 128, 32: 64, 64: 32},
        lrate_dict={128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003},
    ),
}
KIMG_POINTS = [
    0,
    1,
    599.9,
    600,
    600.004,
    750,
    1199.99,
    1200,
    1800,
    2100,
    4321.5,
    7199,
    7200,
    9000.5,
    10799,
    10800,
    11500,
    12000,
    15000,
]


@pytest.mark.parametrize("num_devices", [1, 8])
def test_celebahq_schedule_matches_official(num_devices):
    config = load_recipe("celebahq_1024")
    schedule = _schedule(config, 1024, num_devices)
    preset = OFFICIAL_PRESETS[num_devices]
    for kimg in KIMG_POINTS:
        nimg = int(round(kimg * 1000))
        ours = schedule.at(nimg)
        theirs = official_schedule(nimg, 10, num_devices, max_minibatch_per_gpu={256: 16, 512: 8, 1024: 4}, **preset)
        assert ours.lod == pytest.approx(theirs["lod"], abs=1e-12), kimg
        assert ours.resolution == theirs["resolution"], kimg
        assert ours.alpha == pytest.approx(1 - (theirs["lod"] - math.floor(theirs["lod"])), abs=1e-12)
        assert ours.minibatch == theirs["minibatch"], kimg
        assert ours.g_lr == theirs["lr"] and ours.d_lr == theirs["lr"], kimg
        assert ours.tick_kimg == theirs["tick_kimg"], kimg


def test_fade_uses_new_resolution_values():
    schedule = _schedule(load_recipe("celebahq_1024"), 1024, 1)
    fading = schedule.at(900_000)  # half-way through the 4 -> 8 fade
    assert fading.resolution == 8 and fading.alpha == pytest.approx(0.5)
    assert schedule.at(599_999).resolution == 4 and schedule.at(599_999).alpha == 1.0
    final = schedule.at(11_000_000)
    assert final.resolution == 1024 and final.minibatch == 4 and final.g_lr == 0.0015


def _official_reset_nimgs(schedule_kwargs, total_kimg, resolution_log2, num_gpus, minibatch_repeats=4):
    """The official loop's Adam-reset points (nimg at which reset_optimizer_state runs)."""
    resets, prev_lod, cur_nimg = [], -1.0, 0
    while cur_nimg < total_kimg * 1000:
        sched = official_schedule(cur_nimg, resolution_log2, num_gpus, **schedule_kwargs)
        if np.floor(sched["lod"]) != np.floor(prev_lod) or np.ceil(sched["lod"]) != np.ceil(prev_lod):
            resets.append(cur_nimg)
        prev_lod = sched["lod"]
        cur_nimg += sched["minibatch"] * minibatch_repeats
    return resets


def _our_reset_nimgs(schedule, total_kimg):
    resets, prev_lod, nimg = [], None, 0
    while nimg < total_kimg * 1000:
        phase = schedule.at(nimg)
        if Schedule.crosses_lod_boundary(prev_lod, phase.lod):
            resets.append(nimg)
        prev_lod = phase.lod
        nimg += phase.minibatch * schedule.d_steps_per_round
    return resets


def test_adam_reset_points_match_official_loop():
    config = default_config()
    config.schedule.stabilize_kimg, config.schedule.transition_kimg, config.schedule.total_kimg = 3, 3, 30
    config.schedule.minibatch_base, config.schedule.minibatch = 16, {4: 64, 8: 32}
    schedule = _schedule(config, 32, 1)
    official = _official_reset_nimgs(
        dict(lod_training_kimg=3, lod_transition_kimg=3, minibatch_base=16, minibatch_dict={4: 64, 8: 32}), 30, 5, 1
    )
    ours = _our_reset_nimgs(schedule, 30)
    assert ours == official
    assert len(ours) == 7  # start, then each fade start and each stabilisation start: 4|f8|8|f16|16|f32|32


def test_device_preset_selection_and_cap():
    config = load_recipe("celebahq_1024")
    assert _schedule(config, 1024, 3).minibatch_for(4) == 256  # 2-GPU preset, not rounded (validation refuses it)
    assert _schedule(config, 1024, 16).minibatch_for(1024) == 32  # 8-GPU preset at 1024 px
    assert _schedule(config, 1024, 8).minibatch_for(1024) == 32  # capped at 4 per device = 32


def test_initial_resolution_and_resolutions():
    config = default_config()
    config.schedule.initial_resolution = 16
    schedule = _schedule(config, 64, 1)
    assert schedule.at(0).resolution == 16 and schedule.at(0).lod == 2
    assert schedule.resolutions() == [16, 32, 64]


def test_ema_decay_fixed_or_from_half_life():
    config = default_config()
    assert _schedule(config, 32, 1).at(5000).ema_beta == 0.999  # official G_smoothing
    config.ema.half_life_kimg, config.ema.rampup = 10.0, 0.05
    schedule = _schedule(config, 32, 1)
    phase = schedule.at(1_000_000)  # past the ramp-up: half-life 10 kimg
    assert phase.ema_beta ** (10_000 / phase.minibatch) == pytest.approx(0.5)
    early = schedule.at(20_000)  # ramp-up: half-life min(10k, 0.05 * 20k) = 1000 images
    assert early.ema_beta ** (1000 / early.minibatch) == pytest.approx(0.5)


def test_plan_line_states_every_phase():
    schedule = _schedule(load_recipe("quickstart"), 32, 1)
    assert schedule.plan_text() == (
        "4x4 -> 32x32, 140 kimg: 20 kimg at 4x4, then per resolution (8, 16, 32) a 20 kimg fade-in and 20 kimg stable"
    )
    assert schedule.shortfall() is None
    official = _schedule(load_recipe("celebahq_1024"), 1024, 1).plan_text()
    assert official.endswith("a 600 kimg fade-in and 600 kimg stable, then 1800 kimg more at 1024x1024")


def test_a_run_shorter_than_its_phases_is_named_and_fit_phases_scales_them_into_it():
    config = load_recipe("quickstart")
    config.schedule.total_kimg = 10
    short = _schedule(config, 32, 1)
    assert short.at(9_999).resolution == 4
    assert short.shortfall().startswith(
        "the run ends at 4x4 of a 32x32 model: total_kimg=10 is shorter than the 140 kimg the phases need"
    )
    assert short.plan_text().endswith("; the run stops early, at 4x4")
    config.schedule.fit_phases_to_total = True
    fitted = _schedule(config, 32, 1)
    assert fitted.config.stabilize_kimg == fitted.config.transition_kimg == pytest.approx(10 / 7)  # 3 x 2 + 1 phases
    assert fitted.shortfall() is None
    assert (fitted.at(9_999).resolution, fitted.at(9_999).alpha) == (32, 1.0)
    assert fitted.at(int(6 * 10 / 7 * 1000) - 1).alpha < 1  # the last fade-in ends one stabilize phase before the end
