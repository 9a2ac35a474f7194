"""pggan.load_generator on real Orbax checkpoints of a tiny 16x16 model: the same images as tools/generate.py,
byte for byte, and one-line errors for what cannot be loaded or drawn."""

import zipfile

import numpy as np
import pytest

import pggan
from pggan.errors import UserError
from pggan.sampling import latent_space, media
from tests import tool_support
from tests.run_support import load_recipe, write_checkpoints

FINAL = 16


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    write_checkpoints(workdir, load_recipe("tiny"), [(1000, 8, 1.0), (2000, FINAL, 1.0)])
    return str(workdir)


@pytest.fixture(scope="module")
def generator(run_dir):
    return pggan.load_generator(run_dir)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_attributes_describe_the_model(generator):
    assert (generator.resolution, generator.latent_size, generator.label_size) == (FINAL, 8, 0)
    assert generator.meta["step"] == 2000


@pytest.mark.parametrize("truncation", [1.0, 0.6])
def test_seed_images_equal_the_generate_tools_pngs_byte_for_byte(run_dir, generator, tmp_path, truncation):
    outdir = tmp_path / "images"
    assert (
        tool_support.run_main(
            "generate", f"--workdir={run_dir}", "--seeds=1,5,7-8", f"--outdir={outdir}", f"--truncation={truncation}"
        )
        == 0
    )
    names = ["seed000001.png", "seed000005.png", "seed000007.png", "seed000008.png"]
    assert sorted(p.name for p in outdir.iterdir()) == names
    images = generator.generate(seeds=[1, 5, 7, 8], truncation=truncation)
    assert images.dtype == np.uint8 and images.shape == (4, FINAL, FINAL, 3)
    np.testing.assert_array_equal(images, np.stack([media.load_png(outdir / name) for name in names]))
    assert len({image.tobytes() for image in images}) == 4


def test_latents_give_the_seed_images_and_interpolation_passes_through_the_keyframes(generator):
    seeds = [3, 4]
    images = generator.generate(seeds)
    np.testing.assert_array_equal(generator.generate_from_latents(latent_space.latents_for_seeds(seeds, 8)), images)
    frames = generator.interpolate(seeds, num_frames=6, loop=True)
    assert frames.shape == (6, FINAL, FINAL, 3) and frames.dtype == np.uint8
    keys = latent_space.keyframe_indices(2, 6, True)
    for k, index in enumerate(keys):
        assert np.abs(frames[index].astype(int) - images[k]).max() <= 1
    assert frames[1].tobytes() not in {images[0].tobytes(), images[1].tobytes()}


def test_step_and_resolution_choose_the_checkpoint(run_dir):
    early = pggan.load_generator(run_dir, resolution=8)
    assert (early.resolution, early.meta["step"]) == (8, 1000)
    assert early.generate([0]).shape == (1, 8, 8, 3)
    by_path = pggan.load_generator(f"{run_dir}/checkpoints/1000")
    np.testing.assert_array_equal(by_path.generate([0, 1]), early.generate([0, 1]))


def test_bad_inputs_are_one_line_errors(run_dir, generator, tmp_path):
    with pytest.raises(UserError) as error:
        pggan.load_generator(str(tmp_path / "missing"))
    assert "no such file or folder" in _one_line(error)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(UserError) as error:
        pggan.load_generator(str(notes))
    assert "is not a pggan export" in _one_line(error)
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "not a model")
    with pytest.raises(UserError) as error:
        pggan.load_generator(str(archive))
    assert "spec.json" in _one_line(error)
    with pytest.raises(UserError) as error:
        generator.generate([1], labels=3)
    assert "unconditional" in _one_line(error)
    with pytest.raises(UserError) as error:
        generator.generate_from_latents(np.zeros((2, 5)))
    assert "latents must be [N, 8]" in _one_line(error)


def test_labels_of_a_conditional_model_match_the_tool(tmp_path):
    config = load_recipe("tiny")
    config.model.label_size = 4
    workdir = tmp_path / "conditional"
    write_checkpoints(workdir, config, [(1000, FINAL, 1.0)])
    generator = pggan.load_generator(str(workdir))
    assert generator.label_size == 4
    assert (
        tool_support.run_main(
            "generate", f"--workdir={workdir}", "--seeds=1-2", "--label=3", f"--outdir={tmp_path / 'images'}"
        )
        == 0
    )
    np.testing.assert_array_equal(
        generator.generate([1, 2], labels=3)[1], media.load_png(tmp_path / "images" / "seed000002-class3.png")
    )
    # Without labels, the image of seed s has class s mod label_size; one class per seed can be given too.
    np.testing.assert_array_equal(generator.generate([2, 7]), generator.generate([2, 7], labels=[2, 3]))
    assert generator.generate([2], labels=[1]).tobytes() != generator.generate([2]).tobytes()
    with pytest.raises(UserError) as error:
        generator.generate([1, 2], labels=[4, 0])
    assert "[0, 4)" in _one_line(error)


@pytest.mark.parametrize("text, seeds", [("1,5,7-10", [1, 5, 7, 8, 9, 10]), ("3", [3]), (" 2 , 0-1", [2, 0, 1])])
def test_seed_lists_as_users_write_them(text, seeds):
    assert latent_space.parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [("5-1", "runs backwards"), ("x", "'x'"), ("1,,2", "''"), ("-3", "'-3'")])
def test_bad_seed_lists_are_refused_in_one_line(run_dir, tmp_path, capsys, text, message):
    with pytest.raises(UserError) as error:
        latent_space.parse_seeds(text)
    assert message in _one_line(error)
    assert tool_support.run_main("generate", f"--workdir={run_dir}", f"--seeds={text}", f"--outdir={tmp_path}") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
