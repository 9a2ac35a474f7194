"""The VGG16 port and its protocol against torch-fidelity's VGG16 feature extractor (torchvision's VGG16 with
the same seeded random weights, on real photographs; goldens of tests/golden/make_protocol_goldens.py),
the weight conversion against torchvision's state dict, and pr_vgg16 in the suite."""

from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from pggan.metrics import MetricSuite
from pggan.metrics.errors import WeightsFileError
from pggan.metrics.feature_extraction import VGG16FeatureExtractor
from pggan.metrics.protocols import VGG16_PROTOCOL
from pggan.metrics.vgg16_weights import VGG16_WEIGHTS, convert_state_dict, expected_state_dict_shapes, vgg16_state
from pggan.metrics.weights_files import resolve_weights_path
from tests.metrics_support import random_vgg16_state_dict, write_torch_zip_state_dict

GOLDEN = Path(__file__).parent / "golden"


def test_conversion_expects_torchvisions_vgg16_state_dict():
    golden = np.load(GOLDEN / "vgg16_goldens.npz")
    torchvision = {
        str(n): tuple(int(d) for d in str(s).strip("[]").split(", ")) for n, s in zip(golden["names"], golden["shapes"])
    }
    expected = expected_state_dict_shapes()
    assert set(torchvision) - set(expected) == {"classifier.6.weight", "classifier.6.bias"}  # the 1000 classes
    assert {k: torchvision[k] for k in expected} == expected


def test_full_size_port_matches_torch_fidelity_on_photographs():
    """Full-size weights (138 M values) on one device: fc2 features after ReLU, as torch-fidelity computes them
    with torchvision's VGG16 (and, per its tests, as StyleGAN2-ADA's vgg16.pt does)."""
    golden = np.load(GOLDEN / "vgg16_goldens.npz")
    params = convert_state_dict(random_vgg16_state_dict(expected_state_dict_shapes()))
    model = nnx.merge(*vgg16_state(params))
    del params
    protos = np.load(GOLDEN / "protocol_goldens.npz")
    x = np.concatenate([np.asarray(jax.jit(VGG16_PROTOCOL.preprocess)(protos[f"image_{i}"][None])) for i in range(3)])
    features = np.asarray(jax.jit(lambda m, x: m(x)["fc2_relu"])(model, x))
    reference = golden["fc2_relu"]
    scale = np.abs(reference).max()
    assert np.abs(reference - reference[:1]).max() > 100 * 1e-4 * scale  # input-dependent features
    np.testing.assert_allclose(features, reference, rtol=1e-4, atol=1e-4 * scale)


def test_weights_file_errors_name_the_file_and_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(VGG16_WEIGHTS.env, raising=False)
    with pytest.raises(WeightsFileError) as error:
        resolve_weights_path(VGG16_WEIGHTS, None)
    message = str(error.value)
    assert "vgg16-397923af.pth" in message and VGG16_WEIGHTS.url in message and "PGGAN_VGG16_WEIGHTS" in message
    inception_like = tmp_path / "wrong.pth"
    write_torch_zip_state_dict(inception_like, {"fc.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(WeightsFileError, match="is not the torchvision VGG16 network"):
        VGG16FeatureExtractor.from_weights_file(inception_like, cache=tmp_path)


def test_pr_vgg16_in_the_suite_uses_vgg16_features_and_names_its_protocol():
    """The suite plumbing with a stand-in extractor (pixels as features): scores equal precision_recall's."""
    from pggan.metrics.precision_recall import precision_recall

    class PixelFeatures:
        def __call__(self, images):
            return {"fc2_relu": np.stack([np.asarray(i, np.float32).reshape(-1)[:48] for i in images])}

    rng = np.random.default_rng(0)
    reals = rng.integers(0, 256, (12, 8, 8, 3)).astype(np.uint8)
    fakes = [rng.integers(0, 256, (s, s, 3)).astype(np.uint8) for s in (8, 9, 10, 8, 8, 8, 11, 8)]  # ragged
    suite = MetricSuite(("pr_vgg16",), vgg16=PixelFeatures())
    stats = suite.real_statistics([reals[:5], reals[5:]])
    scores = suite.evaluate([fakes[:3], fakes[3:]], stats)
    expected = precision_recall(
        reals.reshape(12, -1)[:, :48].astype(np.float32),
        np.stack([f.reshape(-1)[:48] for f in fakes]).astype(np.float32),
    )
    assert (scores["precision_vgg16"], scores["recall_vgg16"]) == expected
    assert suite.details(stats, len(fakes)) == {"pr_vgg16": {"protocol": "vgg16_tf1", "num_fakes": 8, "num_reals": 12}}
