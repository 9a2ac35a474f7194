"""FID statistics files: ours written and read back, pytorch-fid's own file read, malformed files refused
in one line each."""

from pathlib import Path

import numpy as np
import pytest

from pggan.metrics.errors import MetricInputError
from pggan.metrics.reference_stats import load_fid_statistics, save_fid_statistics
from tests.metrics_support import random_features

GOLDEN = Path(__file__).parent / "golden"


def test_our_file_round_trips_and_other_tools_read_it_as_mu_and_sigma(tmp_path):
    features = random_features(40, 8, 0.0, seed=5)
    mean, cov = features.mean(axis=0), np.cov(features, rowvar=False)
    path = tmp_path / "reals.npz"
    save_fid_statistics(path, mean, cov, "clean", 40)
    loaded = load_fid_statistics(path, 8, "clean")
    np.testing.assert_array_equal(loaded.mean, mean)
    np.testing.assert_array_equal(loaded.cov, cov)
    assert (loaded.protocol, loaded.num_images) == ("clean", 40)
    with np.load(path) as f:  # what pytorch-fid's and clean-fid's readers do
        assert f["mu"].dtype == f["sigma"].dtype == np.float64 and f["sigma"].shape == (8, 8)
    with pytest.raises(MetricInputError, match="made with protocol clean, not tf1: evaluate with --protocol=clean"):
        load_fid_statistics(path, 8, "tf1")


def test_reads_the_file_pytorch_fid_writes():
    """golden/pytorch_fid_stats_64d.npz: `python -m pytorch_fid --save-stats --dims 64` (random weights)."""
    stats = load_fid_statistics(GOLDEN / "pytorch_fid_stats_64d.npz", 64, "pytorch_fid")
    assert stats.mean.shape == (64,) and stats.cov.shape == (64, 64) and stats.protocol is None
    np.testing.assert_allclose(stats.cov, stats.cov.T)
    with pytest.raises(MetricInputError) as error:
        load_fid_statistics(GOLDEN / "pytorch_fid_stats_64d.npz", 2048, "pytorch_fid")
    message = str(error.value)
    assert "64-d features" in message and "2048-d" in message and "\n" not in message


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_sigma", "lacks sigma: expected FID statistics with arrays mu [D] and sigma [D, D]"),
        ("missing_both", "lacks mu and sigma"),
        ("wrong_sigma_shape", "sigma (4,)"),
        ("wrong_dim", "holds statistics of 3-d features"),
        ("not_a_zip", "is not a readable .npz of FID statistics"),
        ("pickled_object", "is not a readable .npz of FID statistics"),
        ("nan", "contain NaN or infinity"),
        ("missing_file", "do not exist"),
    ],
)
def test_malformed_files_get_one_line(tmp_path, case, message):
    path = tmp_path / "stats.npz"
    mu, sigma = np.zeros(4), np.eye(4)
    if case == "missing_sigma":
        _write(path, mu=mu)
    elif case == "missing_both":
        _write(path, mean=mu)
    elif case == "wrong_sigma_shape":
        _write(path, mu=mu, sigma=np.ones(4))
    elif case == "wrong_dim":
        _write(path, mu=np.zeros(3), sigma=np.eye(3))
    elif case == "not_a_zip":
        path.write_bytes(b"mu and sigma, honestly" * 5)
    elif case == "pickled_object":
        _write(path, mu=np.array([{"mu": 1}], dtype=object), sigma=sigma)
    elif case == "nan":
        _write(path, mu=np.full(4, np.nan), sigma=sigma)
    with pytest.raises(MetricInputError) as error:
        load_fid_statistics(path, 4, "tf1")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unwritable_target_is_one_line(tmp_path):
    with pytest.raises(MetricInputError, match="cannot write statistics to"):
        save_fid_statistics(tmp_path / "missing_dir" / "s.npz", np.zeros(2), np.eye(2), "tf1", 2)
