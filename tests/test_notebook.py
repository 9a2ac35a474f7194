"""docs/quickstart.ipynb, executed: every code cell runs in order in one namespace (as a kernel would), on the
tiny recipe (the notebook's PGGAN_NOTEBOOK_* settings), training a real run and writing real files."""

import json
import os

import numpy as np

from tests.run_support import REPO

NOTEBOOK = os.path.join(REPO, "docs", "quickstart.ipynb")


def test_the_quickstart_notebook_runs_from_training_to_evaluation(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", REPO)  # the notebook's pggan-evaluate subprocess imports this checkout
    monkeypatch.setenv("PGGAN_NOTEBOOK_RECIPE", "tiny")
    monkeypatch.setenv("PGGAN_NOTEBOOK_WORKDIR", str(workdir))
    monkeypatch.setenv("PGGAN_NOTEBOOK_OVERRIDES", json.dumps({"dataset.data_dir": str(tmp_path / "data")}))
    monkeypatch.setenv("PGGAN_NOTEBOOK_PROJECTION_STEPS", "20")
    monkeypatch.setenv("PGGAN_NOTEBOOK_EVALUATION_IMAGES", "32")
    with open(NOTEBOOK) as f:
        cells = json.load(f)["cells"]
    namespace = {"__name__": "__main__"}
    for i, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
        exec(compile("".join(cell["source"]), f"{NOTEBOOK} code cell {i}", "exec"), namespace)
    generator = namespace["G"]
    assert (generator.resolution, generator.meta["step"]) == (16, 768)
    assert namespace["images"].shape == (32, 16, 16, 3)
    assert namespace["frames"].shape == (60, 16, 16, 3) and (tmp_path / "interpolation.gif").stat().st_size > 0
    np.testing.assert_array_equal(
        generator.generate_from_latents(np.load(tmp_path / "latent.npy")), namespace["projected"]
    )
    assert np.isfinite(namespace["records"][-1]["metrics"]["swd_avg"])
