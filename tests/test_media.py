"""uint8 conversion, grids, PNG files, MP4/GIF videos and training-progress frames (real files on disk)."""

import os

import numpy as np
import pytest

from pggan.sampling import media


def _smooth_frames(num, height, width):
    """uint8 [num, height, width, 3] moving colour gradients (codec-friendly, every frame different)."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = [
        np.stack([60 + xx * 64 // width + 8 * t, 100 + yy * 64 // height, np.full_like(xx, 40 + 5 * t)], axis=-1)
        for t in range(num)
    ]
    return np.asarray(frames, np.uint8)


def test_to_uint8_follows_the_official_rounding():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, -3.0, np.nan, 0.2], np.float32)
    # 127.5 * x + 127.5, then rint (half to even), clip; NaN -> 128.
    np.testing.assert_array_equal(media.to_uint8(x), [0, 64, 128, 191, 255, 255, 0, 128, 153])
    gray = media.to_uint8(np.zeros((2, 4, 4, 1), np.float32))
    assert gray.shape == (2, 4, 4, 1) and gray.dtype == np.uint8


def test_make_grid_tiles_row_by_row():
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 5, 3), dtype=np.uint8)
    grid = media.make_grid(images, rows=2, cols=3)
    assert grid.shape == (2 * 3, 3 * 5, 3)
    for i, image in enumerate(images):
        r, c = divmod(i, 3)
        np.testing.assert_array_equal(grid[r * 3 : (r + 1) * 3, c * 5 : (c + 1) * 5], image)
    with pytest.raises(media.MediaError, match="2x2 grid needs 4 images, got 6"):
        media.make_grid(images, 2, 2)
    with pytest.raises(media.MediaError, match="to_uint8"):
        media.make_grid(images.astype(np.float32), 2, 3)


def test_grids_from_batches_regroups_any_batch_sizes():
    images = np.random.default_rng(1).integers(0, 256, (12, 2, 2, 1), dtype=np.uint8)
    grids = list(media.grids_from_batches([images[:5], images[5:6], images[6:]], rows=2, cols=2))
    assert len(grids) == 3
    for k, grid in enumerate(grids):
        np.testing.assert_array_equal(grid, media.make_grid(images[4 * k : 4 * k + 4], 2, 2))
    with pytest.raises(media.MediaError, match="3 images left over"):
        list(media.grids_from_batches([images[:7]], rows=2, cols=2))


def test_png_round_trip_is_byte_stable_and_leaves_no_temporary_files(tmp_path):
    rgb = _smooth_frames(1, 6, 10)[0]
    first, second = tmp_path / "a" / "x.png", tmp_path / "b.png"
    media.save_png(rgb, first)
    media.save_png(rgb, second)
    assert first.read_bytes() == second.read_bytes()
    np.testing.assert_array_equal(media.load_png(first), rgb)
    media.save_png(rgb[..., :1], second)  # grayscale replaces the old file
    np.testing.assert_array_equal(media.load_png(second), rgb[..., :1])
    assert sorted(os.listdir(tmp_path)) == ["a", "b.png"] and os.listdir(tmp_path / "a") == ["x.png"]


def test_bad_images_give_one_line_errors(tmp_path):
    with pytest.raises(media.MediaError, match="uint8 images"):
        media.save_png(np.zeros((4, 4, 3), np.float32), tmp_path / "f.png")
    assert not os.listdir(tmp_path)
    with pytest.raises(media.MediaError, match="image not found"):
        media.load_png(tmp_path / "missing.png")
    corrupt = tmp_path / "corrupt.png"
    media.save_png(_smooth_frames(1, 16, 16)[0], corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:60])
    with pytest.raises(media.MediaError, match="cannot read image"):
        media.load_png(corrupt)


@pytest.mark.parametrize("extension", [".mp4", ".gif"])
def test_video_has_every_frame_at_the_right_size_and_decodes(tmp_path, extension):
    fps, duration, height, width = 8, 1.5, 24, 32
    frames = _smooth_frames(int(duration * fps), height, width)
    path = tmp_path / f"v{extension}"
    assert media.write_video(iter(frames), path, fps=fps) == len(frames)
    info, decoded = media.read_video(path)
    decoded = np.asarray(list(decoded))
    assert (info.num_frames, info.height, info.width) == (duration * fps, height, width)
    assert decoded.shape == frames.shape
    assert abs(info.fps - fps) < 0.5  # a GIF stores whole centiseconds per frame
    error = np.abs(decoded.astype(np.float32) - frames).mean()
    assert error < 3, error
    assert os.listdir(tmp_path) == [path.name]


def test_video_pads_odd_sizes_and_converts_grayscale(tmp_path):
    frames = _smooth_frames(3, 9, 13)[..., :1]
    media.write_video(frames, tmp_path / "g.mp4", fps=4)
    info, decoded = media.read_video(tmp_path / "g.mp4")
    first = next(decoded)
    decoded.close()
    assert (info.height, info.width) == (10, 14)
    assert np.abs(first[:9, :13].astype(np.float32) - frames[0]).mean() < 4
    assert first[9:].max() < 20 and first[:, 13:].max() < 20  # black padding


def test_bad_videos_give_one_line_errors_and_leave_no_file(tmp_path):
    frames = _smooth_frames(2, 8, 8)
    with pytest.raises(media.MediaError, match="unknown video format '.avi'"):
        media.write_video(frames, tmp_path / "v.avi", fps=8)
    with pytest.raises(media.MediaError, match="frame 1 is"):
        media.write_video([frames[0], frames[1, :4]], tmp_path / "v.mp4", fps=8)
    with pytest.raises(media.MediaError, match="no frames"):
        media.write_video([], tmp_path / "v.gif", fps=8)
    assert not os.listdir(tmp_path)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(media.MediaError, match="cannot write"):  # its folder would be a file
        media.write_video(frames, tmp_path / "file" / "v.mp4", fps=8)
    with pytest.raises(media.MediaError, match="video not found"):
        media.read_video(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 100)
    with pytest.raises(media.MediaError, match="cannot decode video"):
        media.read_video(tmp_path / "junk.mp4")


def test_fit_to_frame_scales_and_centres():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    up = media.fit_to_frame(image, 6, 12)  # scale min(6 / 2, 12 / 3) = 3 -> 6 x 9, one black column left
    assert up.shape == (6, 12, 3)
    np.testing.assert_array_equal(up[:, 1:10], np.repeat(np.repeat(image, 3, 0), 3, 1))
    assert not up[:, :1].any() and not up[:, 10:].any()
    down = media.fit_to_frame(np.repeat(np.repeat(image, 4, 0), 4, 1), 2, 3)
    np.testing.assert_array_equal(down, image)  # box average of constant 4x4 blocks
    gray = media.fit_to_frame(image[..., :1], 4, 6)
    np.testing.assert_array_equal(gray, np.repeat(np.repeat(image[..., :1], 2, 0), 2, 1))


def test_video_zoom_makes_small_frames_at_least_the_minimum_size():
    assert media.MIN_VIDEO_SIDE == 256
    assert media.video_zoom(16, 32) == 16  # the shorter side 16 -> 256
    assert media.video_zoom(100, 300) == 3  # 300 x 900
    assert media.video_zoom(1080, 1920) == 1
    assert media.video_zoom(16, 16, zoom=2) == 2
    with pytest.raises(media.MediaError, match="non-negative integer"):
        media.video_zoom(16, 16, zoom=-1)


def test_training_progress_video_from_sample_grids(tmp_path):
    samples = tmp_path / "samples"
    kimgs = [1200.0, 0.0, 140.5]
    for k, kimg in enumerate(kimgs):  # growing grids: 8x12, 16x24, 32x48 pixels
        size = 8 * 2**k
        media.save_png(_smooth_frames(k + 1, size, size * 3 // 2)[k], samples / media.sample_grid_filename(kimg))
    media.save_png(_smooth_frames(1, 4, 4)[0], samples / "reals.png")  # not a sample grid
    assert media.sample_grid_filename(140.5) == "fakes_kimg000140.5.png"
    grids = media.list_sample_grids(samples)
    assert [k for k, _ in grids] == [0.0, 140.5, 1200.0]
    paths = [p for _, p in grids]
    assert media.progress_frame_size(paths) == (32, 48)
    assert media.progress_frame_size(paths, max_height=20, max_width=100) == (20, 30)
    count = media.write_video(media.progress_frames(paths, 32, 48, frames_per_grid=2), tmp_path / "p.mp4", fps=4)
    info, _ = media.read_video(tmp_path / "p.mp4")
    assert count == 6 and (info.num_frames, info.height, info.width) == (6, 32, 48)
    with pytest.raises(media.MediaError, match="no sample grids"):
        media.list_sample_grids(tmp_path)
