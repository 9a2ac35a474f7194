"""Projection of real images (pggan/projection.py, tools/project.py) on real checkpoints of a tiny 16x16 model:
a generated image is found again, the written latent draws the written image, and bad inputs get one line."""

import numpy as np
import pytest

import pggan
from pggan import projection
from pggan.sampling import media
from tests import tool_support
from tests.run_support import load_recipe, write_checkpoints


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    write_checkpoints(workdir, load_recipe("tiny"), [(2000, 16, 1.0)])
    return str(workdir)


def test_a_generated_image_is_found_again_closer_than_any_random_latent(run_dir):
    generator = pggan.load_generator(run_dir)
    target = generator.generate([7])
    # The fixture's D is untrained: its features say nothing about the images, so its term is left out here.
    config = projection.ProjectionConfig(num_steps=80, restarts=3, frame_every=10, d_weight=0)
    result = projection.project(generator.module, target, resolution=16, config=config)
    assert result.latents.shape == (1, 8) and result.latents.dtype == np.float32
    assert result.history.shape == (80, 1) and result.frames.shape == (9, 1, 16, 16, 3)
    assert result.history[-1, 0] < 0.75 * result.history[0, 0]
    found = generator.generate_from_latents(result.latents)
    random_psnr = projection.psnr(np.repeat(target, 20, axis=0), generator.generate(range(100, 120)))
    assert projection.psnr(target, found)[0] > random_psnr.max() + 3


def test_the_tool_writes_image_latent_and_video_that_agree(run_dir, tmp_path):
    target = pggan.load_generator(run_dir).generate([3])[0]
    media.save_png(target, tmp_path / "photo.png")
    outdir = tmp_path / "out"
    assert (
        tool_support.run_main(
            "project",
            f"--workdir={run_dir}",
            f"--target={tmp_path / 'photo.png'}",
            f"--outdir={outdir}",
            "--num_steps=30",
            "--restarts=2",
            "--frame_every=10",
            f"--video={tmp_path / 'progress.mp4'}",
        )
        == 0
    )
    latent = np.load(outdir / "latent.npy")
    assert latent.shape == (1, 8) and latent.dtype == np.float32
    np.testing.assert_array_equal(
        pggan.load_generator(run_dir).generate_from_latents(latent)[0], media.load_png(outdir / "projected.png")
    )
    np.testing.assert_array_equal(media.load_png(outdir / "target.png"), target)
    info, frames = media.read_video(tmp_path / "progress.mp4")
    assert len(list(frames)) == 4 and info.width == 2 * info.height


def test_bad_inputs_give_one_line(run_dir, tmp_path, capsys):
    exported = tmp_path / "g.pggan"
    assert tool_support.run_main("export", f"--workdir={run_dir}", f"--out={exported}") == 0
    media.save_png(np.zeros((16, 16, 3), np.uint8), tmp_path / "black.png")
    cases = [
        (
            (f"--workdir={exported}",),
            "holds no discriminator (it has generator_ema); export the run again with --training_networks to "
            "include them, or project without D's features: --d_weight=0",
        ),
        ((f"--workdir={run_dir}", "--label=1"), "unconditional"),
        ((f"--workdir={run_dir}", "--network=raw"), "--network does not apply to pggan-project; drop it"),
        ((f"--workdir={run_dir}", "--target=absent.png"), "--target must name an image file"),
        ((f"--workdir={run_dir}", "--pixel_weight=0", "--ms_ssim_weight=0", "--d_weight=0"), "not all 0"),
    ]
    for args, message in cases:
        defaults = [f"--target={tmp_path / 'black.png'}", f"--outdir={tmp_path / 'o'}", "--num_steps=2"]
        assert tool_support.run_main("project", *defaults, *args) == 1, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (args, err)
    assert (
        tool_support.run_main(
            "project",
            f"--workdir={exported}",
            "--d_weight=0",
            "--num_steps=2",
            f"--target={tmp_path / 'black.png'}",
            f"--outdir={tmp_path / 'o'}",
        )
        == 0
    )
