"""Image decoding, squaring, resizing and the level-of-detail pyramid (host side, NumPy and Pillow).

Every function returns uint8 HWC arrays with C = 1 (grayscale) or 3 (RGB) and values 0..255.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from pggan.data.errors import UnreadableImageError

CROP_MODES = ("center", "pad")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MIN_RESOLUTION = 4
MAX_RESOLUTION = 1024  # the largest model resolution (pggan.model.networks.ModelSpec)


def is_power_of_two(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


def level_resolutions(resolution: int) -> list[int]:
    """All levels of detail of a dataset at `resolution`: [4, 8, ..., resolution]."""
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION or not is_power_of_two(resolution):
        raise ValueError(f"resolution must be a power of two in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], got {resolution}")
    return [MIN_RESOLUTION << i for i in range(resolution.bit_length() - MIN_RESOLUTION.bit_length() + 1)]


def _to_8bit(img: Image.Image) -> Image.Image:
    """A 16/32-bit integer or float grayscale image as 8-bit 'L' (16-bit range 0..65535, float 0..1)."""
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
    elif img.mode.startswith("I;16") or values.max(initial=0.0) > 255:
        scale = 255.0 / 65535.0
    else:
        scale = 1.0
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "L")


def pil_to_array(img: Image.Image, channels: int) -> np.ndarray:
    """A Pillow image of any mode as uint8 [H, W, channels].

    Grayscale becomes RGB by repeating the channel; colour becomes grayscale by ITU-R 601 luma.
    Transparency (RGBA, LA, palette with transparency) is composited over a white background.
    """
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if channels == 1 else array


def load_image(path: str, channels: int) -> np.ndarray:
    """Decodes an image file as uint8 [H, W, channels], applying its EXIF orientation.

    Raises UnreadableImageError (with the reason) for missing, truncated or corrupt files.
    """
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return pil_to_array(img, channels)
    except Exception as error:  # Pillow raises many types for corrupt files; all mean "unreadable"
        raise UnreadableImageError(f"{type(error).__name__}: {error}") from error


def square_and_resize(image: np.ndarray, resolution: int, crop: str = "center") -> np.ndarray:
    """Makes an image square, then resizes it to resolution x resolution.

    image: uint8 [H, W, C]. crop: 'center' keeps the central square (the shorter side), 'pad' centres
    the image on a black square of the longer side. The resize is Lanczos (anti-aliased when
    shrinking) and is skipped when the square already has the target size.
    Returns uint8 [resolution, resolution, C].
    """
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
    height, width, channels = image.shape
    if crop == "center":
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = image[top : top + side, left : left + side]
    elif height != width:
        side = max(height, width)
        canvas = np.zeros((side, side, channels), np.uint8)
        top, left = (side - height) // 2, (side - width) // 2
        canvas[top : top + height, left : left + width] = image
        image = canvas
    if image.shape[0] == resolution:
        return np.ascontiguousarray(image)
    pil = Image.fromarray(image[:, :, 0] if channels == 1 else image)
    resized = np.asarray(pil.resize((resolution, resolution), Image.Resampling.LANCZOS), np.uint8)
    return resized.reshape(resolution, resolution, channels)


def box_pyramid(image: np.ndarray) -> dict[int, np.ndarray]:
    """Every level of detail of a square power-of-two image, as in the official dataset_tool.

    image: uint8 [R, R, C]. Returns {r: uint8 [r, r, C]} for r = 4, 8, ..., R. Each level is the 2x2
    average of the float (unrounded) level above, rounded half-to-even and clipped; this equals the
    exact mean of the corresponding (R/r x R/r) block of the input, rounded (float32 holds every such
    mean exactly up to R/r = 256).
    """
    resolution = image.shape[0]
    levels = {resolution: image}
    current = image.astype(np.float32)
    for r in reversed(level_resolutions(resolution)[:-1]):
        current = (current[0::2, 0::2] + current[0::2, 1::2] + current[1::2, 0::2] + current[1::2, 1::2]) * 0.25
        levels[r] = np.clip(np.rint(current), 0, 255).astype(np.uint8)
    return levels
