"""tools/import_official.py end to end: a real subprocess writes an Orbax checkpoint that load_generator reads."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from pggan import checkpoint
from tests import official_format as fmt
from tests import official_numpy as ref
from tests.run_support import subprocess_env

pytestmark = pytest.mark.slow  # the import tool as a subprocess

REPO = pathlib.Path(__file__).resolve().parents[1]
STATIC_G = dict(num_channels=3, resolution=16, label_size=0, fmap_base=64, fmap_max=16, latent_size=8)
STATIC_D = dict(num_channels=3, resolution=16, label_size=0, fmap_base=64, fmap_max=16)
LOD = 0.5  # a mid-fade snapshot: tools must sample it at 16x16 with alpha 0.5


def _run_tool(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "import_official.py"), *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )


@pytest.fixture(scope="module")
def imported_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tool")
    pkl = directory / "network-snapshot-000140.pkl"
    networks, settings = fmt.write_snapshot(pkl, STATIC_G, STATIC_D, seed=3, lod=LOD)
    workdir = directory / "run"
    result = _run_tool(f"--pkl={pkl}", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr
    return dict(pkl=pkl, workdir=workdir, networks=networks, settings=settings, stdout=result.stdout)


@pytest.mark.parametrize("network,official_index", [("ema", 2), ("raw", 0)])
def test_imported_checkpoint_samples_like_the_official_networks(imported_run, network, official_index):
    generator, meta = checkpoint.load_generator(str(imported_run["workdir"]), network=network)
    assert (meta["resolution"], meta["alpha"], meta["step"]) == (16, 0.5, 140_000)
    config = json.loads(meta["config"])
    assert config["dataset"]["name"] == "imported-network-snapshot-000140" and config["dataset"]["source"] == ""
    z = np.random.default_rng(4).standard_normal((4, 8)).astype(np.float32)
    got = np.asarray(generator(z, resolution=meta["resolution"], alpha=meta["alpha"])).transpose(0, 3, 1, 2)
    want = ref.g_paper(
        imported_run["networks"][official_index].vars, imported_run["settings"][0], z, np.zeros((4, 0)), LOD
    )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_tool_reports_what_it_imported(imported_run):
    assert "16x16x3" in imported_run["stdout"] and "alpha 0.5" in imported_run["stdout"]
    assert "pggan-generate" in imported_run["stdout"]


def test_tool_errors_are_one_line_and_nonzero(imported_run, tmp_path):
    again = _run_tool(f"--pkl={imported_run['pkl']}", f"--workdir={imported_run['workdir']}")
    assert again.returncode != 0
    assert again.stderr.strip().splitlines()[-1].startswith("error: ") and "already holds checkpoints" in again.stderr
    assert "Traceback" not in again.stderr

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cposix\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")  # os.system('touch ...')
    refused = _run_tool(f"--pkl={evil}", f"--workdir={tmp_path / 'run'}")
    assert refused.returncode != 0 and "refusing to load posix.system" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not marker.exists() and not (tmp_path / "run").exists()
    stray = _run_tool(f"--pkl={imported_run['pkl']}", f"--workdir={tmp_path / 'run'}", "--step=5")
    assert stray.returncode == 1 and stray.stderr.strip() == "error: --step does not apply to pggan-import; drop it"
