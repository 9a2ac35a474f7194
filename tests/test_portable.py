"""The .pggan export: a real run's checkpoint exported by tools/export.py and read back without the run, and
hostile or broken archives refused in one line before any array is built."""

import io
import json
import shutil
import zipfile

import jax
import numpy as np
import pytest

import pggan
from pggan import network_sources, portable
from pggan.sampling import latent_space, media
from tests import tool_support
from tests.run_support import load_recipe, write_checkpoints

WEIGHT = "generator_ema/blocks/1/conv0/kernel.npy"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    write_checkpoints(workdir, load_recipe("tiny"), [(1000, 8, 1.0), (2000, 16, 1.0)])
    return str(workdir)


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    """(full export with G, D and StableHLO, export of the EMA generator alone)."""
    folder = tmp_path_factory.mktemp("exports")
    full, small = str(folder / "full.pggan"), str(folder / "small.pggan")
    assert (
        tool_support.run_main("export", f"--workdir={run_dir}", f"--out={full}", "--training_networks", "--stablehlo")
        == 0
    )
    assert tool_support.run_main("export", f"--workdir={run_dir}", f"--out={small}") == 0
    return full, small


def test_round_trip_gives_identical_parameters_and_images(run_dir, exported, tmp_path):
    full, small = exported
    original = network_sources.load(run_dir, network_sources.ITEMS)
    loaded = network_sources.load(full, network_sources.ITEMS)
    assert (loaded.spec, loaded.resolution, loaded.alpha) == (original.spec, 16, 1.0)
    for item in network_sources.ITEMS:
        for a, b in zip(jax.tree.leaves(original.parameters[item]), jax.tree.leaves(loaded.parameters[item])):
            np.testing.assert_array_equal(np.asarray(a), b)
    seeds = [0, 3, 9]
    expected = pggan.load_generator(run_dir).generate(seeds, truncation=0.8)
    np.testing.assert_array_equal(pggan.load_generator(small).generate(seeds, truncation=0.8), expected)
    # tools/generate.py draws the same PNGs from the file as from the run.
    assert (
        tool_support.run_main(
            "generate", f"--workdir={small}", "--seeds=0,3,9", f"--outdir={tmp_path}", "--truncation=0.8"
        )
        == 0
    )
    np.testing.assert_array_equal(media.load_png(tmp_path / "seed000003.png"), expected[1])
    with zipfile.ZipFile(small) as archive:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        assert not any(name.startswith(("generator/", "discriminator/")) for name in archive.namelist())
        assert portable.STABLEHLO_ENTRY not in archive.namelist()


def test_the_stablehlo_function_runs_without_pggans_model(exported):
    full, _ = exported
    function = jax.export.deserialize(bytearray(portable.read_stablehlo(full)))
    latents = latent_space.latents_for_seeds([0, 3, 9], 8)
    images = np.asarray(function.call(latents))
    assert images.shape == (3, 16, 16, 3)
    generator = pggan.load_generator(full)
    reference = np.asarray(generator.module(latents, None, resolution=16, alpha=1.0))
    np.testing.assert_allclose(images, reference, atol=1e-5)
    assert np.abs(media.to_uint8(images).astype(int) - generator.generate([0, 3, 9])).max() <= 1
    with pytest.raises(portable.ExportError, match="holds no StableHLO"):
        portable.read_stablehlo(exported[1])


def _rewritten(source: str, target, replace: dict, compression=zipfile.ZIP_STORED) -> str:
    """A copy of the export `source` with entries replaced (bytes), removed (None) or added."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w", compression=compression) as out:
        for name in archive.namelist():
            if name not in replace:
                out.writestr(name, archive.read(name))
        for name, data in replace.items():
            if data is not None:
                out.writestr(name, data)
    return str(target)


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def test_export_command_line_mistakes_are_refused_in_one_line(run_dir, tmp_path, capsys):
    out = f"--out={tmp_path}/g.pggan"
    cases = (
        ((f"--workdir={run_dir}", f"--out={tmp_path}/g.npz"), "error: --out must name the file to write, ending in"),
        ((f"--workdir={run_dir}", out, "--network=raw"), "error: --network does not apply to pggan-export; drop it"),
        ((f"--workdir={run_dir}", out, "--seed=3"), "error: --seed does not apply to pggan-export; drop it"),
        ((f"--workdir={run_dir}", out, "--step=1000", "--resolution=8"), "error: --step and --resolution both"),
        ((out,), "error: --workdir is required"),
    )
    for arguments, message in cases:
        assert tool_support.run_main("export", *arguments) == 1, arguments
        assert capsys.readouterr().err.startswith(message), arguments
    assert not (tmp_path / "g.pggan").exists()


def test_hostile_and_broken_archives_are_refused_in_one_line(exported, tmp_path):
    _, small = exported
    with zipfile.ZipFile(small) as archive:
        spec = json.loads(archive.read("spec.json"))
        shape = np.load(io.BytesIO(archive.read(WEIGHT))).shape
    cases = {
        # Same number of bytes as the real array, so that only the .npy header tells.
        "wrong shape": ({WEIGHT: _npy(np.zeros(int(np.prod(shape)), np.float32))}, f"expected float32 {shape}"),
        "float64": ({WEIGHT: _npy(np.zeros(int(np.prod(shape)) // 2, np.float64))}, "holds float64"),
        "other size": ({WEIGHT: _npy(np.zeros((2, 2), np.float32))}, "a stored float32 array of shape"),
        "object array (a pickle)": (
            {WEIGHT: _npy(np.array([{"a": 1}] * int(np.prod(shape)), object).reshape(shape))},
            "bytes",
        ),
        "truncated": ({WEIGHT: _npy(np.zeros(shape, np.float32))[:-8]}, "bytes"),
        "extra entry": ({"../evil.sh": b"rm -rf /"}, "unexpected ['../evil.sh']"),
        "missing entry": ({WEIGHT: None}, "missing"),
        "not our spec": ({"spec.json": b'{"format": "other"}'}, "not of the pggan-export format"),
        "newer version": ({"spec.json": json.dumps({**spec, "version": 2}).encode()}, "format version 2"),
        "bad model": (
            {"spec.json": json.dumps({**spec, "model": {**spec["model"], "resolution": 12}}).encode()},
            "describes no valid model",
        ),
        "huge spec": ({"spec.json": b" " * (1 << 17)}, "at most"),
    }
    for name, (replace, message) in cases.items():
        path = _rewritten(small, tmp_path / f"{name}.pggan", replace)
        with pytest.raises(portable.ExportError) as error:
            network_sources.load(path)
        assert message in str(error.value) and "\n" not in str(error.value), name
    deflated = _rewritten(small, tmp_path / "deflated.pggan", {}, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(portable.ExportError, match="compression 8"):
        network_sources.load(deflated)
    renamed = tmp_path / "copy.pggan"
    shutil.copy(small, renamed)
    with pytest.raises(portable.ExportError, match="holds no discriminator .* --training_networks"):
        network_sources.load(str(renamed), ("generator_ema", "discriminator"))
