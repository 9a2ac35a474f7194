"""pggan installed by pip into a fresh virtual environment: the console scripts run from another folder.

The environment gets pggan (a regular, non-editable install of this checkout, built without network:
`--no-build-isolation --no-deps`) and sees the test interpreter's installed dependencies through a
`.pth` line; the checkout is not on its path, so the recipes and data must come from the installed package.
"""

import os
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from pggan.cli import checkpoint_flags
from pggan.sampling import media
from tests.run_support import REPO, load_recipe, write_checkpoints

SCRIPTS = (
    "pggan-train",
    "pggan-generate",
    "pggan-evaluate",
    "pggan-prepare",
    "pggan-import",
    "pggan-export",
    "pggan-project",
    "pggan-explore",
)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """bin/ of a virtual environment with pggan installed from this checkout."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    purelib = sysconfig.get_paths(vars={"base": str(root), "platbase": str(root)})["purelib"]
    with open(os.path.join(purelib, "dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [
            os.path.join(root, "bin", "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            REPO,
        ],
        check=True,
        cwd=build,
        env={**os.environ, "PIP_CACHE_DIR": str(build / "cache")},
    )
    return os.path.join(root, "bin")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    write_checkpoints(workdir, load_recipe("tiny"), [(2000, 16, 1.0)])
    return str(workdir)


def _run(venv, script, *args, cwd) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    return subprocess.run(
        [os.path.join(venv, script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_every_script_is_installed_and_has_help(venv, tmp_path):
    shown = {}
    for script in SCRIPTS:
        result = _run(venv, script, "--help", cwd=tmp_path)
        # --help prints the program's docstring and flags, then exits with status 0 (absl's own: 1).
        assert result.returncode == 0 and f"{script}:" in result.stdout, (script, result.stderr)
        assert "  --" in result.stdout, script
        shown[script] = result.stdout
    assert "--workdir" in shown["pggan-train"] and "recipe" in shown["pggan-train"]
    # Each tool's help lists the shared checkpoint flags it takes, and only those.
    taken = {"pggan-import": {"workdir"}, "pggan-export": {"workdir", "step", "resolution"}}
    for script, names in taken.items():
        assert {name for name in checkpoint_flags.NAMES if f"\n  --{name}:" in shown[script]} == names, script


def test_recipes_by_name_and_the_installed_package_from_another_folder(venv, tmp_path):
    result = _run(venv, "pggan-train", "--config=quickstart", "--config.seed=3", "--show_config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "model.resolution = 32" in result.stdout and "seed = 3" in result.stdout
    where = subprocess.run(
        [os.path.join(venv, "python"), "-c", "import pggan.recipes; print(pggan.recipes.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert not where.stdout.startswith(REPO)
    assert "quickstart, synthetic, tiny" in _one_line_error(
        _run(venv, "pggan-train", "--config=quickstrat", "--show_config", cwd=tmp_path)
    )


def test_generate_export_project_and_generate_from_the_export(venv, run_dir, tmp_path):
    result = _run(venv, "pggan-generate", f"--workdir={run_dir}", "--seeds=1,4-5", "--outdir=images", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "images")) == ["seed000001.png", "seed000004.png", "seed000005.png"]
    result = _run(venv, "pggan-export", f"--workdir={run_dir}", "--out=model.pggan", cwd=tmp_path)
    assert result.returncode == 0 and "Wrote model.pggan" in result.stdout, result.stderr
    result = _run(venv, "pggan-generate", "--workdir=model.pggan", "--seeds=1,4-5", "--outdir=again", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = _run(
        venv,
        "pggan-project",
        f"--workdir={run_dir}",
        "--target=images/seed000004.png",
        "--outdir=projected",
        "--num_steps=5",
        "--restarts=1",
        cwd=tmp_path,
    )
    assert result.returncode == 0 and "PSNR" in result.stdout, result.stderr
    assert np.load(tmp_path / "projected" / "latent.npy").shape == (1, 8)
    for name in os.listdir(tmp_path / "images"):
        np.testing.assert_array_equal(
            media.load_png(tmp_path / "again" / name), media.load_png(tmp_path / "images" / name)
        )


def test_bad_inputs_give_one_line(venv, run_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    cases = [
        (("pggan-generate", "--workdir=absent", "--seeds=1", "--outdir=o"), "no such file or folder"),
        (("pggan-explore", "--workdir=absent", "--port=0"), "no such file or folder"),
        (("pggan-generate", "--workdir=notes.txt", "--seeds=1", "--outdir=o"), "is not a pggan export"),
        (("pggan-generate", f"--workdir={run_dir}", "--seeds=5-1", "--outdir=o"), "runs backwards"),
        (("pggan-generate", f"--workdir={run_dir}", "--seeds=x", "--outdir=o"), "'x'"),
        (("pggan-generate", f"--workdir={run_dir}", "--seeds=1", "--label=2", "--outdir=o"), "unconditional"),
        (("pggan-export", "--workdir=notes.txt", "--out=m.pggan"), "is not a pggan export"),
    ]
    for args, message in cases:
        assert message in _one_line_error(_run(venv, *args, cwd=tmp_path)), args
