"""tools/generate.py on a real run directory: Orbax checkpoints of a tiny 16x16 model at two stages.

Most tests call the tool's main() in this process (flags parsed by absl as on the command line);
a few start it as a real subprocess: one-line errors with exit status 1, and the same grid on 1 and
8 devices.
"""

import os
import re
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from pggan import checkpoint
from pggan.sampling import generation, latent_space, media
from tests import tool_support
from tests.run_support import REPO, load_recipe, subprocess_env, write_checkpoints

TOOL = os.path.join(REPO, "tools", "generate.py")
FINAL, FIRST = 16, 8  # the tiny recipe's resolution, and the stage of the first checkpoint
FIRST_STEP, LAST_STEP = 1000, 2000


def _make_run(workdir, label_size: int = 0, stages=((FIRST_STEP, FIRST, 1.0), (LAST_STEP, FINAL, 1.0))) -> None:
    """Checkpoints of the tiny recipe at each (step, resolution, alpha) (see run_support.write_checkpoints)."""
    config = load_recipe("tiny")
    config.model.label_size = label_size
    write_checkpoints(workdir, config, stages)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    _make_run(workdir)
    return str(workdir)


def _tool(*args: str) -> int:
    """Runs the tool's main() in this process with these command-line flags; returns its exit status."""
    return tool_support.run_main("generate", *args)


def _subprocess(*args: str, devices: int = 8) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, TOOL, *args], env=subprocess_env(devices), capture_output=True, text=True, timeout=300
    )


def _ema_sampler(run_dir, **kwargs):
    return generation.Sampler.from_checkpoint(run_dir, **kwargs)[0]


# ----------------------------------------------------------------------------------------------
# Grids and images


def test_grid_is_byte_stable_has_the_right_size_and_shows_the_seed_images(run_dir, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert _tool(f"--workdir={run_dir}", "--grid=2x3", "--seed=7", f"--out={a}", "--batch_size=8") == 0
    assert _tool(f"--workdir={run_dir}", "--grid=2x3", "--seed=7", f"--out={b}", "--batch_size=8") == 0
    assert a.read_bytes() == b.read_bytes()
    grid = media.load_png(a)
    assert grid.shape == (2 * FINAL, 3 * FINAL, 3)
    # Cell 0 of a seed's grid is that seed's single image, rendered independently here.
    images_dir = tmp_path / "images"
    assert _tool(f"--workdir={run_dir}", "--num=2", "--seed=7", f"--outdir={images_dir}", "--batch_size=8") == 0
    assert sorted(os.listdir(images_dir)) == ["seed000007.png", "seed000008.png"]
    assert np.abs(media.load_png(images_dir / "seed000007.png").astype(int) - grid[:FINAL, :FINAL]).max() <= 1
    # Every cell is a different image, and a different seed gives a different grid.
    cells = [
        grid[r * FINAL : (r + 1) * FINAL, c * FINAL : (c + 1) * FINAL].tobytes() for r in range(2) for c in range(3)
    ]
    assert len(set(cells)) == 6
    assert _tool(f"--workdir={run_dir}", "--grid=2x3", "--seed=8", f"--out={b}", "--batch_size=8") == 0
    assert a.read_bytes() != b.read_bytes()


def test_network_resolution_step_and_zoom_choose_what_is_drawn(run_dir, tmp_path, capsys):
    def grid(*args):
        out = tmp_path / "g.png"
        assert _tool(f"--workdir={run_dir}", "--grid=1x2", f"--out={out}", "--batch_size=8", *args) == 0
        return media.load_png(out)

    ema, raw = grid(), grid("--network=raw")
    assert ema.shape == raw.shape == (FINAL, 2 * FINAL, 3) and not np.array_equal(ema, raw)
    assert "below the model's" not in capsys.readouterr().out
    first_stage = grid(f"--resolution={FIRST}")
    assert first_stage.shape == (FIRST, 2 * FIRST, 3)
    said = capsys.readouterr().out
    assert f"Sampling {FIRST}x{FIRST} images" in said
    assert f"That is below the model's {FINAL}x{FINAL}: the checkpoint is from an earlier stage" in said
    np.testing.assert_array_equal(grid(f"--step={FIRST_STEP}"), first_stage)
    np.testing.assert_array_equal(grid(f"--step={LAST_STEP}"), ema)
    np.testing.assert_array_equal(grid("--zoom=3"), np.repeat(np.repeat(ema, 3, axis=0), 3, axis=1))


def test_a_checkpoint_taken_during_a_fade_in_is_sampled_at_its_alpha(tmp_path):
    workdir = tmp_path / "fading"
    _make_run(workdir, stages=((LAST_STEP, FINAL, 0.25),))
    out = tmp_path / "grid.png"
    assert _tool(f"--workdir={workdir}", "--grid=1x2", f"--out={out}", "--batch_size=8") == 0
    generator, meta = checkpoint.load_generator(str(workdir))
    assert (meta["resolution"], meta["alpha"], meta["phase"]["lod"]) == (FINAL, 0.25, 0.75)
    latents = jnp.asarray(latent_space.grid_latents(0, 2, generator.spec.latent_size))

    def grid(alpha):  # the generator called directly, without the batched, sharded pipeline
        return media.make_grid(media.to_uint8(generator(latents, resolution=FINAL, alpha=alpha)), 1, 2)

    assert np.abs(media.load_png(out).astype(int) - grid(0.25)).max() <= 1
    assert np.abs(media.load_png(out).astype(int) - grid(1.0)).max() > 10


def test_truncation_zero_gives_the_same_image_for_every_latent(run_dir, tmp_path):
    out = tmp_path / "psi0.png"
    assert _tool(f"--workdir={run_dir}", "--grid=2x4", "--truncation=0", f"--out={out}", "--batch_size=8") == 0
    grid = media.load_png(out)
    cells = grid.reshape(2, FINAL, 4, FINAL, 3).transpose(0, 2, 1, 3, 4).reshape(8, FINAL, FINAL, 3)
    assert (cells == cells[0]).all() and cells[0].std() > 5


def test_conditional_models_take_labels(tmp_path):
    workdir = tmp_path / "conditional"
    _make_run(workdir, label_size=3, stages=((LAST_STEP, FINAL, 1.0),))
    sampler = _ema_sampler(str(workdir), batch_size=8)
    # Grid cells cycle through the classes; --label fixes one class for all.
    np.testing.assert_array_equal(sampler.class_ids(range(5)), [0, 1, 2, 0, 1])
    paths = generation.save_seed_images(sampler, [4, 5], str(tmp_path / "images"))
    assert [os.path.basename(p) for p in paths] == ["seed000004-class1.png", "seed000005-class2.png"]
    latents = latent_space.grid_latents(0, 2, sampler.spec.latent_size)
    fixed = _ema_sampler(str(workdir), label=2, batch_size=8)
    np.testing.assert_array_equal(fixed.class_ids(range(2)), [2, 2])
    np.testing.assert_array_equal(fixed.images(latents)[0], sampler.images(latents, [2, 2])[0])
    assert not np.array_equal(fixed.images(latents)[0], sampler.images(latents)[0])  # class 2 vs class 0
    with pytest.raises(latent_space.SamplingError, match=r"integers in \[0, 3\)"):
        _ema_sampler(str(workdir), label=3)


# ----------------------------------------------------------------------------------------------
# Videos


def _decoded(path):
    info, frames = media.read_video(path)
    return info, np.asarray(list(frames), np.float32)


@pytest.mark.parametrize("extension", [".mp4", ".gif"])
def test_random_walk_video_has_duration_times_fps_frames_that_show_the_walk(run_dir, tmp_path, extension):
    duration, fps, zoom = 2, 5, 4
    path = tmp_path / f"walk{extension}"
    assert (
        _tool(
            f"--workdir={run_dir}",
            f"--video={path}",
            f"--duration={duration}",
            f"--fps={fps}",
            "--video_grid=1x2",
            "--seed=3",
            "--smoothing_sec=0.5",
            f"--zoom={zoom}",
            "--batch_size=8",
        )
        == 0
    )
    info, frames = _decoded(path)
    assert (info.num_frames, info.height, info.width) == (duration * fps, FINAL * zoom, 2 * FINAL * zoom)
    walk = latent_space.smooth_random_walk(duration * fps, 8, fps=fps, smoothing_sec=0.5, seed=3, num_walks=2)
    sampler = _ema_sampler(run_dir, batch_size=8)
    for t in (0, duration * fps // 2):
        expected = media.make_grid(sampler.images(walk[t]), 1, 2).repeat(zoom, 0).repeat(zoom, 1)
        assert np.abs(frames[t] - expected).mean() < 6, t  # lossy codecs; other frames differ by ~20


def test_keyframes_of_the_interpolation_are_the_images_of_their_seeds(run_dir, tmp_path):
    seeds, fps, duration = [4, 9, 2], 4, 2.0
    num_frames = int(duration * fps)
    sampler = _ema_sampler(run_dir, batch_size=8)
    latents = latent_space.keyframe_walk(seeds, num_frames, sampler.spec.latent_size, num_walks=2, loop=True)
    frames = list(generation.video_frames(sampler, latents, 1, 2, zoom=1))
    assert len(frames) == num_frames and frames[0].shape == (FINAL, 2 * FINAL, 3)
    for k, index in enumerate(latent_space.keyframe_indices(len(seeds), num_frames, loop=True)):
        np.testing.assert_array_equal(frames[index], generation.sample_grid(sampler, seeds[k], 1, 2))
    # The tool writes the same video (lossless H.264; zoomed, as 4:2:0 chroma needs more than 16 pixels).
    path = tmp_path / "keys.mp4"
    assert (
        _tool(
            f"--workdir={run_dir}",
            f"--video={path}",
            "--keyframes=4,9,2",
            f"--duration={duration}",
            f"--fps={fps}",
            "--video_grid=1x2",
            "--zoom=4",
            "--crf=0",
            "--batch_size=8",
        )
        == 0
    )
    info, decoded = _decoded(path)
    assert info.num_frames == num_frames
    for index in (0, 3):
        assert np.abs(decoded[index] - frames[index].repeat(4, 0).repeat(4, 1)).mean() < 3


def test_progress_video_from_sample_grids_and_from_stage_checkpoints(run_dir, tmp_path):
    # The trainer's sample grids: three of them at kimg 0, 1, 2.
    samples = os.path.join(run_dir, "samples")
    rng = np.random.default_rng(0)
    for kimg in (0.0, 1.0, 2.0):
        media.save_png(
            rng.integers(0, 256, (2 * FINAL, 4 * FINAL, 3), dtype=np.uint8),
            os.path.join(samples, media.sample_grid_filename(kimg)),
        )
    path = tmp_path / "samples.mp4"
    assert _tool(f"--workdir={run_dir}", f"--progress_video={path}", "--duration=1.5", "--fps=4") == 0
    info, _ = _decoded(path)
    # 6 frames over 3 grids; automatic zoom: 32 pixels high -> x8 = 256.
    assert (info.num_frames, info.height, info.width) == (6, 256, 512)

    path = tmp_path / "stages.mp4"
    assert (
        _tool(
            f"--workdir={run_dir}",
            f"--progress_video={path}",
            "--progress_from=checkpoints",
            "--duration=1",
            "--fps=2",
            "--video_grid=1x2",
            "--zoom=2",
            "--crf=0",
            "--batch_size=8",
        )
        == 0
    )
    info, frames = _decoded(path)
    assert (info.num_frames, info.height, info.width) == (2, 2 * FINAL, 4 * FINAL)
    for frame, (step, resolution) in zip(frames, ((FIRST_STEP, FIRST), (LAST_STEP, FINAL))):
        grid = generation.sample_grid(_ema_sampler(run_dir, step=step, batch_size=8), 0, 1, 2)
        factor = 2 * FINAL // resolution
        assert np.abs(frame - grid.repeat(factor, 0).repeat(factor, 1)).mean() < 3


# ----------------------------------------------------------------------------------------------
# Errors and devices


@pytest.mark.parametrize(
    "args, message",
    [
        (["--grid=8y8", "--out=g.png"], "grid must look like ROWSxCOLS"),
        (["--grid=2x2", "--out=g.jpg"], "unknown extension: use one of .png"),
        (["--video=w.avi"], r"unknown extension: use one of \.mp4, \.gif"),
        (["--grid=2x2", "--out=g.png", "--num=3"], "choose exactly one output: .* \\(got --grid, --num\\)"),
        ([], "choose exactly one output"),
        (["--video=v.mp4", "--seeds=1,2"], r"--seeds\) \(a video through chosen seeds: --video with --keyframes\)"),
        (["--grid=2x2"], "--out is required"),
        (["--grid=2x2", "--out=g.png", "--keyframes=1,2"], "--keyframes does not apply to --grid"),
        (["--video=w.mp4", "--keyframes=1,2", "--smoothing_sec=2"], "--smoothing_sec is for random walks"),
        (["--video=w.mp4", "--keyframes=1,x"], "--keyframes must be non-negative integer seeds"),
        (["--video=w.mp4", "--duration=0"], "--duration and --fps must be positive"),
        (["--progress_video=p.mp4", "--truncation=0.5"], "--truncation does not apply to a progress video from sample"),
        (["--grid=2x2", "--out=g.png", "--truncation=1.5"], r"truncation psi must be in \[0, 1\]"),
        (["--grid=2x2", "--out=g.png", "--label=0"], "unconditional"),
        (["--grid=2x2", "--out=g.png", "--step=5"], r"no checkpoint at step 5 .* available steps: \[1000, 2000\]"),
        (["--grid=2x2", "--out=g.png", "--resolution=4"], r"no checkpoint at resolution 4 .* \[8, 16\]"),
        (["--grid=2x2", "--out=g.png", "--resolution=8", "--step=1000"], "give one of them"),
        (["--video=w.mp4", "--keyframes=1", "--loop=false"], "at least 2 keyframes"),
    ],
)
def test_bad_settings_give_one_line_errors(run_dir, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert _tool(f"--workdir={run_dir}", *args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert re.search(message, err), err
    assert os.listdir(tmp_path) == []  # nothing written


def test_the_command_line_tool_exits_with_one_line_errors(tmp_path):
    result = _subprocess(f"--workdir={tmp_path}", "--grid=2x2", f"--out={tmp_path / 'g.png'}", devices=1)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no checkpoints in") and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.slow
def test_the_same_seed_gives_the_same_grid_on_one_and_eight_devices(run_dir, tmp_path):
    for devices in (1, 8):
        result = _subprocess(
            f"--workdir={run_dir}", "--grid=3x3", "--seed=5", f"--out={tmp_path / f'{devices}.png'}", devices=devices
        )
        assert result.returncode == 0, result.stderr
    one, eight = (media.load_png(tmp_path / f"{devices}.png").astype(int) for devices in (1, 8))
    assert one.shape == (3 * FINAL, 3 * FINAL, 3)
    assert np.abs(one - eight).max() <= 1
