"""Small on-disk image folders for the data tests, and independent reference computations."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

RESOLUTION = 16


def smooth_image(seed: int, height: int, width: int) -> np.ndarray:
    """A distinct, smooth uint8 [height, width, 3] image (survives JPEG and resizing recognisably)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    phases = rng.uniform(0, 2 * np.pi, (3, 2))
    channels = [127.5 + 120 * np.sin(3 * x + p[0]) * np.cos(2 * y + p[1]) for p in phases]
    return np.clip(np.rint(np.stack(channels, -1)), 0, 255).astype(np.uint8)


def make_mixed_folder(root: str) -> dict[str, tuple[np.ndarray, str]]:
    """Writes a class-per-subfolder image tree in many formats, plus junk and corrupt files.

    Returns {relative path: (expected top-level image uint8 [16, 16, 3], class folder)} for the
    images whose stored top level is known exactly (lossless, already square at 16x16, or needing only
    an exact centre crop). Also writes: a 24x20 JPEG (resized), a corrupt .jpg, a truncated .png, a
    text file and a hidden file, which must be skipped or ignored.
    """
    expected = {}

    def save(relpath: str, pixels: np.ndarray, **kwargs) -> None:
        path = os.path.join(root, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(pixels).save(path, **kwargs)

    for i in range(4):
        image = smooth_image(i, RESOLUTION, RESOLUTION)
        save(f"cats/png_{i}.png", image)
        expected[f"cats/png_{i}.png"] = (image, "cats")
    image = smooth_image(10, RESOLUTION, RESOLUTION)
    save("dogs/deep/nested.BMP", image)
    expected["dogs/deep/nested.BMP"] = (image, "dogs")
    image = smooth_image(11, RESOLUTION, RESOLUTION)
    save("dogs/lossless.webp", image, lossless=True)
    expected["dogs/lossless.webp"] = (image, "dogs")
    wide = smooth_image(12, RESOLUTION, RESOLUTION + 6)  # centre crop drops 3 columns each side
    save("dogs/wide.png", wide)
    expected["dogs/wide.png"] = (wide[:, 3 : 3 + RESOLUTION], "dogs")
    gray = smooth_image(13, RESOLUTION, RESOLUTION)[:, :, 0]
    save("cats/gray.png", gray)
    expected["cats/gray.png"] = (np.repeat(gray[:, :, None], 3, axis=2), "cats")
    rgba = np.concatenate(
        [smooth_image(14, RESOLUTION, RESOLUTION), np.full((RESOLUTION, RESOLUTION, 1), 255, np.uint8)], axis=2
    )
    rgba[:4, :, 3] = 0  # fully transparent rows become white
    save("cats/alpha.png", rgba)
    composited = rgba[:, :, :3].copy()
    composited[:4] = 255
    expected["cats/alpha.png"] = (composited, "cats")
    save("dogs/photo.jpg", smooth_image(15, 24, 20), quality=95)
    with open(os.path.join(root, "cats", "corrupt.jpg"), "wb") as file:
        file.write(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3)
    good_png = os.path.join(root, "cats", "png_0.png")
    with open(good_png, "rb") as file:
        head = file.read()[:60]
    with open(os.path.join(root, "dogs", "truncated.png"), "wb") as file:
        file.write(head)
    with open(os.path.join(root, "dogs", "notes.txt"), "w") as file:
        file.write("not an image")
    with open(os.path.join(root, "cats", ".hidden.png"), "wb") as file:
        file.write(b"junk")
    return expected


def box_downsample(image: np.ndarray, resolution: int) -> np.ndarray:
    """Independent reference: exact mean of each (R/r x R/r) block in float64, rounded half-to-even."""
    size = image.shape[0]
    factor = size // resolution
    blocks = image.astype(np.float64).reshape(resolution, factor, resolution, factor, image.shape[2])
    return np.clip(np.rint(blocks.mean(axis=(1, 3))), 0, 255).astype(np.uint8)
