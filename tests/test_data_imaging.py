"""Image decoding, squaring and the level-of-detail pyramid, against independent computations."""

import numpy as np
import pytest
from PIL import Image

from pggan.data import imaging
from pggan.data.errors import UnreadableImageError
from tests.data_helpers import box_downsample, smooth_image


def test_box_pyramid_equals_exact_block_means():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    image[:2, :2] = [[[1], [2]], [[1], [2]]]  # a block whose mean is exactly 1.5: rounds half to even
    levels = imaging.box_pyramid(image)
    assert sorted(levels) == [4, 8, 16, 32, 64]
    for resolution, level in levels.items():
        np.testing.assert_array_equal(level, box_downsample(image, resolution))
    assert levels[32][0, 0, 0] == 2


def test_level_resolutions():
    assert imaging.level_resolutions(4) == [4]
    assert imaging.level_resolutions(1024) == [4, 8, 16, 32, 64, 128, 256, 512, 1024]
    with pytest.raises(ValueError):
        imaging.level_resolutions(96)


def test_square_and_resize_crops_pads_and_resizes():
    image = smooth_image(0, 32, 40)
    np.testing.assert_array_equal(imaging.square_and_resize(image, 32, "center"), image[:, 4:36])
    padded = imaging.square_and_resize(image[:24, :32], 32, "pad")
    np.testing.assert_array_equal(padded[4:28], image[:24, :32])
    assert padded[:4].max() == 0 and padded[28:].max() == 0
    small = imaging.square_and_resize(image, 8, "center")
    assert small.shape == (8, 8, 3)
    assert np.abs(small.astype(int) - box_downsample(image[:, 4:36], 8)).mean() < 4  # anti-aliased
    gray = imaging.square_and_resize(image[:, :, :1], 16)
    assert gray.shape == (16, 16, 1)


def test_load_image_modes(tmp_path):
    rgb = smooth_image(1, 8, 8)
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(imaging.load_image(str(tmp_path / "gray.png"), 3), np.repeat(rgb[:, :, :1], 3, 2))
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    luma = imaging.load_image(str(tmp_path / "rgb.png"), 1)[:, :, 0].astype(float)
    want = rgb @ np.array([0.299, 0.587, 0.114])
    assert np.abs(luma - want).max() <= 1
    sixteen = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    loaded = imaging.load_image(str(tmp_path / "deep.png"), 1)[:, :, 0]
    assert np.abs(loaded - sixteen.astype(float) * 255 / 65535).max() <= 0.5 + 1e-9
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "palette.gif")
    assert imaging.load_image(str(tmp_path / "palette.gif"), 3).shape == (8, 8, 3)


def test_load_image_applies_exif_orientation(tmp_path):
    image = Image.fromarray(smooth_image(2, 6, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise for display
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    assert imaging.load_image(str(tmp_path / "rotated.jpg"), 3).shape == (10, 6, 3)


def test_unreadable_files_raise_one_error_type(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    for path in (tmp_path / "bad.png", tmp_path / "missing.jpg"):
        with pytest.raises(UnreadableImageError):
            imaging.load_image(str(path), 3)
