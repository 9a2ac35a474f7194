"""The FID Inception port against pytorch-fid (goldens), and each protocol end to end against the
reference package's own pipeline on real photographs (goldens of tests/golden/make_protocol_goldens.py)."""

from pathlib import Path

import numpy as np
import pytest

from pggan.metrics.feature_extraction import InceptionFeatureExtractor
from pggan.metrics.inception import TAP_NAMES
from pggan.metrics.inception_weights import convert_state_dict, expected_state_dict_shapes
from pggan.metrics.protocols import PROTOCOLS
from tests.metrics_support import random_inception_state_dict

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def params():
    """The goldens' seeded random weights, through the real .pth converter."""
    return convert_state_dict(random_inception_state_dict(expected_state_dict_shapes()))


def _assert_matches(ours, reference, what):
    scale = np.abs(reference).max()
    # The goldens differ between images far beyond the tolerance: a match is meaningful.
    assert np.abs(reference - reference[:1]).max() > 100 * 1e-4 * scale, what
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * scale, err_msg=what)


def test_port_matches_pytorch_fid(params):
    golden = np.load(GOLDEN / "inception_taps.npz")
    taps = InceptionFeatureExtractor(params, "tf1")(golden["images"])
    for name in TAP_NAMES:
        assert taps[name].shape == golden[name].shape, name
        _assert_matches(taps[name], golden[name], name)


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_protocol_features_match_the_reference_pipeline(params, protocol):
    """Photographs of three sizes (a list: resized one by one), against torch-fidelity (tf1), pytorch-fid's
    get_activations on PNG files (pytorch_fid) and clean-fid's resizer before the network (clean)."""
    golden = np.load(GOLDEN / "protocol_goldens.npz")
    photos = [golden[f"image_{i}"] for i in range(3)]
    features = InceptionFeatureExtractor(params, protocol)(photos)["features_2048"]
    _assert_matches(features, golden[f"{protocol}_features"], protocol)
    others = [golden[f"{p}_features"] for p in PROTOCOLS if p != protocol]
    assert all(
        np.abs(other - golden[f"{protocol}_features"]).max() > 30 * 1e-4 * np.abs(other).max() for other in others
    )  # the protocols are told apart at this tolerance
