"""The FID Inception port against pytorch-fid (goldens) and the TF1 resize against a loop transcription."""

from pathlib import Path

import jax
import numpy as np
import pytest

from tests.metrics_support import random_inception_state_dict, tf1_resize_loops
from pggan.metrics.inception import TAP_NAMES, preprocess, tf1_resize_bilinear
from pggan.metrics.inception_features import InceptionFeatureExtractor
from pggan.metrics.inception_weights import convert_state_dict, expected_state_dict_shapes

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def extractor():
    """The port with the goldens' seeded random weights, through the real .pth converter."""
    state_dict = random_inception_state_dict(expected_state_dict_shapes())
    return InceptionFeatureExtractor(convert_state_dict(state_dict))


def test_port_matches_pytorch_fid(extractor):
    golden = np.load(GOLDEN / "inception_taps.npz")
    taps = extractor(golden["images"])
    for name in TAP_NAMES:
        reference = golden[name]
        assert taps[name].shape == reference.shape, name
        scale = np.abs(reference).max()
        # The goldens differ between images far beyond the tolerance: a match is meaningful.
        assert np.abs(reference - reference[:1]).max() > 100 * 1e-4 * scale, name
        np.testing.assert_allclose(taps[name], reference, rtol=1e-4, atol=1e-4 * scale, err_msg=name)


@pytest.mark.parametrize("in_shape,out_shape", [((5, 7), (12, 9)), ((13, 11), (4, 6)), ((3, 3), (299, 299))])
def test_tf1_resize_matches_loop_transcription(in_shape, out_shape):
    images = np.random.default_rng(0).integers(0, 256, (2, *in_shape, 3)).astype(np.uint8)
    ours = np.asarray(jax.jit(tf1_resize_bilinear, static_argnums=(1, 2))(images, *out_shape))
    np.testing.assert_allclose(ours, tf1_resize_loops(images, *out_shape), rtol=0, atol=1e-4)


def test_tf1_resize_is_not_half_pixel_resize():
    images = np.random.default_rng(1).integers(0, 256, (1, 6, 6, 3)).astype(np.float32)
    ours = np.asarray(tf1_resize_bilinear(images, 9, 9))
    half_pixel = np.asarray(jax.image.resize(images, (1, 9, 9, 3), "bilinear", antialias=False))
    assert np.abs(ours - half_pixel).max() > 1.0
    # TF1 maps output pixel 3k to input pixel 2k (src = dst * 6 / 9): corners align, no half pixels.
    np.testing.assert_allclose(ours[:, ::3, ::3], images[:, ::2, ::2], atol=1e-3)


def test_preprocess_range():
    images = np.array([0, 128, 255], np.uint8).reshape(1, 1, 3, 1).repeat(3, axis=-1)
    x = np.asarray(preprocess(images))
    assert x.shape == (1, 299, 299, 3)
    assert x.min() == -1.0 and x.max() == pytest.approx(127 / 128)
