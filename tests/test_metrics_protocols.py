"""Each protocol's resize and preprocessing against an independent re-derivation (Pillow itself, NumPy
transcriptions of the TF1 and PyTorch kernels) and against the network input that the reference
packages produced from real photographs (tests/golden/make_protocol_goldens.py)."""

from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from pggan.metrics.errors import MetricInputError
from pggan.metrics.protocols import PROTOCOLS, VGG16_PROTOCOL, inception_protocol
from pggan.metrics.resize import resample
from tests.metrics_support import pixel_samples, tf1_resize_loops

GOLDEN = Path(__file__).parent / "golden"
_resample = jax.jit(resample, static_argnums=(1, 2, 3))


def _photos():
    golden = np.load(GOLDEN / "protocol_goldens.npz")
    return [golden[f"image_{i}"] for i in range(3)], golden


def torch_bilinear_loops(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """ATen's bilinear upsample (align_corners=False), transcribed as loops: [H, W, C] -> float32.

    scale = in / out (float32); src = max(scale * (dst + 0.5) - 0.5, 0); i0 = int(src);
    i1 = i0 + 1 unless i0 is the last pixel; weights (1 - l, l) with l = src - i0.
    """

    def axis(in_size, out_size):
        scale = np.float32(in_size) / np.float32(out_size)
        rows = []
        for dst in range(out_size):
            src = max(scale * (np.float32(dst) + np.float32(0.5)) - np.float32(0.5), np.float32(0))
            i0 = int(src)
            i1 = i0 + (1 if i0 < in_size - 1 else 0)
            lam = np.float32(src - np.float32(i0))
            rows.append((i0, i1, np.float32(1) - lam, lam))
        return rows

    x = image.astype(np.float32)
    out = np.zeros((height, width, x.shape[2]), np.float32)
    for y, (y0, y1, wy0, wy1) in enumerate(axis(x.shape[0], height)):
        for xx, (x0, x1, wx0, wx1) in enumerate(axis(x.shape[1], width)):
            out[y, xx] = wy0 * (wx0 * x[y0, x0] + wx1 * x[y0, x1]) + wy1 * (wx0 * x[y1, x0] + wx1 * x[y1, x1])
    return out


@pytest.mark.parametrize("out_shape", [(299, 299), (40, 77), (150, 330)])
def test_pil_bicubic_matches_pillow_on_photographs(out_shape):
    photos, _ = _photos()
    for photo in photos:
        ours = np.asarray(_resample(photo[None], *out_shape, "pil_bicubic"))[0]
        pillow = np.stack(
            [
                np.asarray(
                    Image.fromarray(photo[:, :, c].astype(np.float32), mode="F").resize(
                        out_shape[::-1], Image.Resampling.BICUBIC
                    )
                )
                for c in range(3)
            ],
            axis=-1,
        )
        np.testing.assert_allclose(ours, pillow, rtol=0, atol=2e-4)  # float32 sums vs Pillow's double


@pytest.mark.parametrize("in_shape,out_shape", [((5, 7), (12, 9)), ((13, 11), (4, 6)), ((61, 90), (29, 31))])
def test_linear_resizes_match_loop_transcriptions(in_shape, out_shape):
    image = np.random.default_rng(0).integers(0, 256, (*in_shape, 3)).astype(np.uint8)
    torch_like = np.asarray(_resample(image[None], *out_shape, "torch_bilinear"))[0]
    np.testing.assert_allclose(torch_like, torch_bilinear_loops(image, *out_shape), rtol=0, atol=1e-4)
    tf1 = np.asarray(_resample(image[None], *out_shape, "tf1_bilinear"))
    np.testing.assert_allclose(tf1, tf1_resize_loops(image[None], *out_shape), rtol=0, atol=1e-4)


def test_tf1_resize_is_not_half_pixel_resize():
    images = np.random.default_rng(1).integers(0, 256, (1, 6, 6, 3)).astype(np.float32)
    ours = np.asarray(resample(images, 9, 9, "tf1_bilinear"))
    half_pixel = np.asarray(resample(images, 9, 9, "torch_bilinear"))
    assert np.abs(ours - half_pixel).max() > 1.0
    # TF1 maps output pixel 3k to input pixel 2k (src = dst * 6 / 9): corners align, no half pixels.
    np.testing.assert_allclose(ours[:, ::3, ::3], images[:, ::2, ::2], atol=1e-3)
    # PyTorch's half-pixel rule is jax.image.resize's bilinear (no antialias) when enlarging.
    np.testing.assert_allclose(
        half_pixel, jax.image.resize(images, (1, 9, 9, 3), "bilinear", antialias=False), atol=1e-3
    )


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_network_input_matches_the_reference_packages(protocol):
    """The preprocessed photographs at the golden probe positions, as torch-fidelity (tf1), pytorch-fid
    (pytorch_fid) and clean-fid (clean) fed them to the network."""
    photos, golden = _photos()
    rows, cols, channels = pixel_samples(299)
    preprocess = jax.jit(PROTOCOLS[protocol].preprocess)
    ours = np.stack([np.asarray(preprocess(photo[None]))[0][rows, cols, channels] for photo in photos])
    np.testing.assert_allclose(ours, golden[f"{protocol}_pixels"], rtol=0, atol=2e-6)


def test_preprocessing_ranges_and_rederived_formulas():
    photos, _ = _photos()
    photo = photos[1]  # 208x200: shrunk to 299 on one side, enlarged on the other
    rederived = {
        "tf1": (tf1_resize_loops(photo[None], 299, 299)[0] - 128) / 128,
        "pytorch_fid": 2 * torch_bilinear_loops(photo.astype(np.float32) / np.float32(255), 299, 299) - 1,
        "clean": (
            np.clip(
                np.stack(
                    [
                        np.asarray(
                            Image.fromarray(photo[:, :, c].astype(np.float32), mode="F").resize(
                                (299, 299), Image.Resampling.BICUBIC
                            )
                        )
                        for c in range(3)
                    ],
                    axis=-1,
                ),
                0,
                255,
            )
            - 128
        )
        / 128,
    }
    for name, expected in rederived.items():
        ours = np.asarray(jax.jit(PROTOCOLS[name].preprocess)(photo[None]))[0]
        np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-6, err_msg=name)
    extremes = np.array([0, 255], np.uint8).reshape(1, 1, 2, 1).repeat(3, axis=-1)
    assert np.asarray(PROTOCOLS["tf1"].preprocess(extremes)).min() == -1.0
    assert np.asarray(PROTOCOLS["pytorch_fid"].preprocess(extremes)).max() == 1.0
    vgg = np.asarray(VGG16_PROTOCOL.preprocess(extremes))
    assert vgg.shape == (1, 224, 224, 3)
    np.testing.assert_allclose(vgg[0, 0, 0], -np.array([0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225], rtol=1e-6)
    with pytest.raises(MetricInputError, match="unknown protocol 'tf2'; choose among tf1,pytorch_fid,clean"):
        inception_protocol("tf2")
