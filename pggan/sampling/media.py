"""Images and video files: uint8 conversion, grids, PNG, MP4 (H.264) and GIF, training-progress frames.

Conventions: images are uint8 [N, H, W, C] (C = 1 grayscale, 3 RGB) unless a function says float;
a grid is uint8 [rows * H, cols * W, C]; video frames are uint8 [H, W, C] and are always passed as
iterables, so a long video never sits in memory. Grid specs and grid sizes are (rows, cols).
Every file is written atomically (temporary file in the same folder, then rename): a killed
process never leaves a half-written PNG or video behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
import warnings
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
from PIL import Image

from pggan import dependencies
from pggan.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".gif")
MIN_VIDEO_SIDE = 256  # automatic video zoom: the shorter side of a frame gets at least this many pixels
SAMPLE_GRID_PATTERN = re.compile(r"^fakes_kimg(\d+\.\d)\.png$")


class MediaError(UserError):
    """Bad image or video input or output (wrong shape or dtype, unreadable file, unknown format)."""


# ----------------------------------------------------------------------------------------------
# Images and grids


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Generator output float [-1, 1] (any shape, e.g. [N, H, W, C]) -> uint8 [0, 255], same shape.

    The official conversion: `x * 127.5 + 127.5` (adjust_dynamic_range), rint, clip. NaN becomes 128.
    """
    x = np.nan_to_num(np.asarray(images, np.float32), nan=0.0)
    return np.clip(np.rint(x * np.float32(127.5) + np.float32(127.5)), 0, 255).astype(np.uint8)


def _check_images(images: np.ndarray, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise MediaError(
            f"{what} expects uint8 images [N, H, W, 1 or 3], got {images.dtype} {images.shape}; "
            "convert generator output with to_uint8"
        )
    return images


def make_grid(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Tiles rows * cols images row by row: uint8 [rows*cols, H, W, C] -> uint8 [rows*H, cols*W, C]."""
    images = _check_images(images, "make_grid")
    n, h, w, c = images.shape
    if n != rows * cols:
        raise MediaError(f"a {rows}x{cols} grid needs {rows * cols} images, got {n}")
    return images.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def grids_from_batches(batches: Iterable[np.ndarray], rows: int, cols: int) -> Iterator[np.ndarray]:
    """Regroups a stream of image batches uint8 [b, H, W, C] (any b) into grids of rows * cols images.

    Yields uint8 [rows*H, cols*W, C] per rows * cols images, e.g. one video frame per time step of a
    grid of random walks. Leftover images that do not fill a grid are an error.
    """
    per_grid = rows * cols
    leftover = np.zeros((0,), np.uint8)
    for batch in batches:
        batch = _check_images(batch, "grids_from_batches")
        images = np.concatenate([leftover, batch]) if len(leftover) else batch
        full = len(images) // per_grid * per_grid
        for start in range(0, full, per_grid):
            yield make_grid(images[start : start + per_grid], rows, cols)
        leftover = images[full:]
    if len(leftover):
        raise MediaError(f"{len(leftover)} images left over: not a multiple of the {rows}x{cols} grid")


def video_zoom(height: int, width: int, zoom: int = 0) -> int:
    """Integer upscaling factor for video frames of height x width pixels.

    zoom > 0 is returned as is; zoom = 0 picks the smallest factor that makes the shorter side at
    least MIN_VIDEO_SIDE pixels (H.264 halves colour resolution, and players show tiny videos badly).
    """
    if isinstance(zoom, bool) or not isinstance(zoom, (int, np.integer)) or zoom < 0:
        raise MediaError(f"zoom must be a non-negative integer (0 = automatic), got {zoom!r}")
    return int(zoom) if zoom else max(1, -(-MIN_VIDEO_SIDE // min(height, width)))


def fit_to_frame(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scales an image to fit inside height x width (aspect kept), centred on black.

    Upscaling uses nearest neighbours (low-resolution samples stay crisp), downscaling box averages.
    uint8 [h, w, C] -> uint8 [height, width, C].
    """
    image = _check_images(np.asarray(image)[None], "fit_to_frame")[0]
    h, w, c = image.shape
    scale = min(height / h, width / w)
    new_h, new_w = max(1, min(height, round(h * scale))), max(1, min(width, round(w * scale)))
    if (new_h, new_w) != (h, w):
        resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX
        image = np.asarray(Image.fromarray(image[..., 0] if c == 1 else image).resize((new_w, new_h), resample))
        image = image.reshape(new_h, new_w, c)
    frame = np.zeros((height, width, c), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    frame[top : top + new_h, left : left + new_w] = image
    return frame


# ----------------------------------------------------------------------------------------------
# Files


@contextlib.contextmanager
def _spawning_ffmpeg() -> Iterator[None]:
    """Silences JAX's os.fork() warning while imageio-ffmpeg starts ffmpeg: subprocess execs right
    after forking, which is safe in a multithreaded process."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside `path` (same extension) and renames it onto `path` on success.

    Creates missing folders; any OS-level failure (permissions, full disk, ffmpeg exiting) becomes a
    one-line MediaError, and the temporary file is removed.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{os.path.splitext(name)[1]}")
    try:
        os.makedirs(folder, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise MediaError(f"cannot write {path} ({e})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_png(image: np.ndarray, path: str | os.PathLike) -> None:
    """Writes uint8 [H, W, 1 or 3] as a PNG, atomically; creates missing folders.

    The bytes depend only on the pixels, so the same image always gives the same file.
    """
    image = _check_images(np.asarray(image)[None], "save_png")[0]
    with _atomic_path(path) as tmp:
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp, format="PNG")


@contextlib.contextmanager
def _open_image(path: str | os.PathLike) -> Iterator[Image.Image]:
    """Opens an image with PIL; a missing or unreadable file becomes a one-line MediaError."""
    try:
        with Image.open(path) as image:
            yield image
    except FileNotFoundError:
        raise MediaError(f"image not found: {path}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"cannot read image {path} ({e}); is it an intact PNG?") from None


def load_png(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as uint8 [H, W, 1] (grayscale) or [H, W, 3] (anything else, as RGB)."""
    with _open_image(path) as image:
        mode = "L" if image.mode in ("1", "L", "LA") else "RGB"
        return np.asarray(image.convert(mode), np.uint8).reshape(image.height, image.width, -1)


def _even_rgb(frame: np.ndarray) -> np.ndarray:
    """Video frame uint8 [H, W, 1 or 3] -> RGB [H', W', 3] with even sides (black padding), as yuv420p needs."""
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)))
    return np.ascontiguousarray(frame)


def _ffmpeg_options(path: str | os.PathLike, crf: int) -> dict:
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension == ".gif":  # per-frame palettes in one pass: nothing is buffered
        return dict(
            codec="gif",
            pix_fmt_out="pal8",
            output_params=["-vf", "split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1"],
        )
    if extension == ".mp4":
        return dict(codec="libx264", pix_fmt_out="yuv420p", output_params=["-crf", str(int(crf))])
    raise MediaError(f"unknown video format {extension!r} for {path}: use one of {VIDEO_EXTENSIONS}")


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float, crf: int = 18) -> int:
    """Encodes frames uint8 [H, W, 1 or 3] into an MP4 (H.264, yuv420p) or a looping GIF, atomically.

    The format follows the extension (.mp4 or .gif). Frames are streamed to ffmpeg (the binary
    shipped by imageio-ffmpeg) one at a time, so `frames` can be a generator of any length. Odd
    sides are padded by one black pixel (yuv420p needs even sizes); grayscale is written as RGB.

    Args:
      frames: iterable of uint8 [H, W, C], all the same size.
      path: output file, .mp4 or .gif.
      fps: frames per second (> 0).
      crf: H.264 constant rate factor (0 = lossless ... 51 = worst; 18 is visually lossless).
        A GIF stores whole centiseconds per frame, so its rate is only close to fps.

    Returns:
      The number of frames written.
    """
    options = _ffmpeg_options(path, crf)
    imageio_ffmpeg = dependencies.require("imageio_ffmpeg", "writing videos")
    if not fps > 0:
        raise MediaError(f"fps must be positive, got {fps}")
    count, size, writer = 0, None, None
    with _atomic_path(path) as tmp:
        try:
            for frame in frames:
                frame = _check_images(np.asarray(frame)[None], "write_video")[0]
                if writer is None:
                    size = frame.shape[:2]
                    even = _even_rgb(frame)
                    writer = imageio_ffmpeg.write_frames(
                        tmp,
                        (even.shape[1], even.shape[0]),
                        fps=float(fps),
                        quality=None,
                        macro_block_size=1,
                        ffmpeg_log_level="error",
                        **options,
                    )
                    with _spawning_ffmpeg():
                        writer.send(None)
                elif frame.shape[:2] != size:
                    raise MediaError(
                        f"all video frames must have one size: frame {count} is {frame.shape[:2]}, the first was {size}"
                    )
                writer.send(_even_rgb(frame))
                count += 1
        finally:
            if writer is not None:
                writer.close()
        if not count:
            raise MediaError(f"no frames to write to {path}")
    return count


class VideoInfo(NamedTuple):
    """What a decoded video holds: frame count, frame height and width in pixels, frames per second."""

    num_frames: int
    height: int
    width: int
    fps: float


def read_video(path: str | os.PathLike) -> tuple[VideoInfo, Iterator[np.ndarray]]:
    """Opens a video (MP4, GIF, anything ffmpeg reads) for decoding.

    Returns (info, frames): frames yields uint8 [height, width, 3] in order (exhaust or close it to
    end its ffmpeg process); info.num_frames comes from a full decode pass, not container metadata.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MediaError(f"video not found: {path}")
    imageio_ffmpeg = dependencies.require("imageio_ffmpeg", "reading videos")
    try:
        with _spawning_ffmpeg():
            num_frames, _ = imageio_ffmpeg.count_frames_and_secs(path)
            reader = imageio_ffmpeg.read_frames(path)
            meta = next(reader)
    except (RuntimeError, OSError, StopIteration) as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MediaError(f"cannot decode video {path} ({first_line})") from None
    width, height = meta["size"]
    return VideoInfo(num_frames, height, width, float(meta["fps"])), _decode(reader, height, width)


def _decode(reader: Iterator[bytes], height: int, width: int) -> Iterator[np.ndarray]:
    try:
        for raw in reader:
            yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    finally:
        reader.close()


# ----------------------------------------------------------------------------------------------
# Training-progress video


def sample_grid_filename(kimg: float) -> str:
    """Name of the sample grid the trainer writes at `kimg` thousand images, e.g. 'fakes_kimg001200.0.png'."""
    return f"fakes_kimg{kimg:08.1f}.png"


def list_sample_grids(directory: str | os.PathLike) -> list[tuple[float, str]]:
    """[(kimg, path)] of the sample grids in `directory` (see sample_grid_filename), sorted by kimg."""
    if not os.path.isdir(directory):
        raise MediaError(f"sample folder not found: {directory}")
    found = [
        (float(m[1]), os.path.join(directory, name))
        for name in os.listdir(directory)
        if (m := SAMPLE_GRID_PATTERN.match(name))
    ]
    if not found:
        raise MediaError(f"no sample grids named like {sample_grid_filename(0)!r} in {directory}")
    return sorted(found)


def progress_frame_size(paths: Iterable[str], max_height: int = 1080, max_width: int = 1920) -> tuple[int, int]:
    """Frame (height, width) for a progress video: the largest grid, shrunk to fit the box, even sides."""
    sizes = []
    for path in paths:
        with _open_image(path) as image:
            sizes.append((image.height, image.width))
    if not sizes:
        raise MediaError("a progress video needs at least one grid image")
    height, width = max(s[0] for s in sizes), max(s[1] for s in sizes)
    scale = min(1.0, max_height / height, max_width / width)
    return max(2, int(height * scale) // 2 * 2), max(2, int(width * scale) // 2 * 2)


def progress_frames(paths: Iterable[str], height: int, width: int, frames_per_grid: int = 1) -> Iterator[np.ndarray]:
    """Frames of a training-progress video: each grid image fitted to height x width, shown
    `frames_per_grid` times. Yields uint8 [height, width, C]; loads one image at a time."""
    for path in paths:
        frame = fit_to_frame(load_png(path), height, width)
        for _ in range(frames_per_grid):
            yield frame
