"""A package that only some paths need is imported on use, and its absence is one line naming it."""

import sys

import numpy as np
import pytest

from pggan import dependencies
from pggan.data import config as data_config
from pggan.sampling import media
from pggan.training import writers
from pggan.training.config import DatasetConfig


def _message(purpose: str, package: str) -> str:
    return (
        f"^{purpose} needs the Python package {package}, which is not installed: pip install {package} "
        r"\(or pip install -e \. for all of pggan's packages\)$"
    )


def test_tensorboard_events_need_tensorboardx(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX.proto.event_pb2", None)
    with pytest.raises(dependencies.MissingPackageError, match=_message("writing TensorBoard events", "tensorboardX")):
        writers.RunWriter(str(tmp_path))


def test_videos_need_imageio_ffmpeg_and_pngs_do_not(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    frames = [np.zeros((8, 8, 3), np.uint8)] * 2
    with pytest.raises(dependencies.MissingPackageError, match=_message("writing videos", "imageio-ffmpeg")):
        media.write_video(frames, tmp_path / "walk.mp4", fps=10)
    media.save_png(frames[0], str(tmp_path / "grid.png"))
    assert (tmp_path / "grid.png").exists()


def test_only_the_host_pipeline_needs_grain(monkeypatch):
    monkeypatch.delitem(sys.modules, "pggan.data.pipeline", raising=False)  # imported afresh, without grain
    monkeypatch.setitem(sys.modules, "grain", None)
    with pytest.raises(
        dependencies.MissingPackageError,
        match=r"^reading 32x32 batches on the host \(a level not held on the devices, see "
        r"dataset.on_device\) needs the Python package grain, ",
    ):
        data_config.iterator_from_config(DatasetConfig(), None, resolution=32, batch_size=8, mesh=None, seed=0)


def test_a_missing_dependency_of_a_package_is_named_itself():
    error = ModuleNotFoundError("No module named 'portpicker'", name="portpicker")
    assert str(dependencies.missing_package(error, "reading batches")).startswith(
        "reading batches needs the Python package portpicker, which is not installed: pip install portpicker"
    )


def test_the_explorer_page_names_its_extra(monkeypatch):
    from pggan.explore import page

    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(
        dependencies.MissingPackageError,
        match=r"^pggan-explore \(the web page of a trained generator\) needs the Python package gradio, which is not "
        r"installed: pip install -e '\.\[explore\]' in the pggan checkout \(or pip install gradio\)$",
    ):
        page.gradio()
