"""MetricSuite end to end: real statistics saved and reloaded, every metric, the one-line errors."""

import numpy as np
import pytest

from pggan.metrics import ALL_METRICS, WEIGHTS_ENV, WEIGHTS_URL, MetricSuite
from pggan.metrics.errors import MetricInputError, WeightsFileError
from pggan.metrics.inception_weights import expected_state_dict_shapes
from tests.metrics_support import golden_images, random_inception_state_dict, write_torch_zip_state_dict


def _batches(images, size=8):
    return [images[i : i + size] for i in range(0, len(images), size)]


def _save_and_reload(stats, path):
    np.savez(path, **stats)
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_swd_and_ms_ssim_need_no_weights(monkeypatch, tmp_path):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    rng = np.random.default_rng(0)
    reals = rng.integers(0, 256, (16, 32, 32, 3)).astype(np.uint8)
    fakes = np.clip(reals // 2 + rng.integers(0, 60, reals.shape), 0, 255).astype(np.uint8)
    suite = MetricSuite(names=("swd", "ms_ssim"), seed=3)
    stats = _save_and_reload(suite.real_statistics(_batches(reals)), tmp_path / "reals.npz")
    assert int(stats["resolution"]) == 32 and int(stats["num_images"]) == 16
    assert stats["swd_32"].shape == (16 * 128, 147) and stats["swd_16"].shape == (16 * 128, 147)
    scores = suite.evaluate(_batches(fakes, 5), stats)
    assert sorted(scores) == ["ms_ssim", "swd_16", "swd_32", "swd_avg"]
    assert scores["swd_32"] > 0 and 0 < scores["ms_ssim"] < 1
    assert suite.evaluate(_batches(fakes, 8), stats) == pytest.approx(scores)  # seeded, batch-free
    with pytest.raises(MetricInputError, match="real statistics are for 32x32"):
        suite.evaluate([fakes[:, :16, :16]], stats)
    with pytest.raises(MetricInputError, match="lack"):
        suite.evaluate(_batches(fakes), {k: v for k, v in stats.items() if k != "swd_16"})
    with pytest.raises(MetricInputError, match="unknown metrics"):
        MetricSuite(names=("swd", "lpips"))


def test_inception_metrics_without_weights_say_where_to_get_them(monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(WeightsFileError) as error:
        MetricSuite()
    assert WEIGHTS_URL in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_all_metrics_from_a_weights_file(monkeypatch, tmp_path):
    pth = tmp_path / "pt_inception.pth"
    write_torch_zip_state_dict(pth, random_inception_state_dict(expected_state_dict_shapes()))
    monkeypatch.setenv(WEIGHTS_ENV, str(pth))
    suite = MetricSuite(names=ALL_METRICS[:-1], cache=tmp_path / "cache")  # all but pr_vgg16
    images = np.concatenate([golden_images(8, seed=s) for s in (1, 2)])  # 16 x 32x32
    stats = _save_and_reload(suite.real_statistics(_batches(images)), tmp_path / "reals.npz")
    assert stats["inception_features"].shape == (16, 2048)
    assert stats["inception_cov"].shape == (2048, 2048) and stats["inception_cov"].dtype == np.float64
    scores = suite.evaluate(_batches(images), stats)  # the reals against themselves
    assert set(scores) == {
        "swd_32",
        "swd_16",
        "swd_avg",
        "ms_ssim",
        "fid",
        "kid_mean",
        "kid_std",
        "is_mean",
        "is_std",
        "precision_inception",
        "recall_inception",
    }
    assert all(np.isfinite(v) for v in scores.values())
    assert abs(scores["fid"]) < 1e-3 * np.trace(stats["inception_cov"])
    assert scores["precision_inception"] == scores["recall_inception"] == 1.0
    assert 1.0 <= scores["is_mean"] <= 1008.0


def test_counts_pixel_metrics_take_the_first_images_and_fakes_may_outnumber_reals():
    rng = np.random.default_rng(1)
    reals = rng.integers(0, 256, (12, 16, 16, 3)).astype(np.uint8)
    fakes = rng.integers(0, 256, (20, 16, 16, 3)).astype(np.uint8)
    suite = MetricSuite(names=("swd", "ms_ssim"), seed=2, num_images=6)
    stats = suite.real_statistics(_batches(reals, 5))
    assert int(stats["num_images"]) == 12 and stats["swd_16"].shape == (6 * 128, 147)
    scores = suite.evaluate(_batches(fakes, 7), stats)
    reference = MetricSuite(names=("swd", "ms_ssim"), seed=2)
    assert scores == reference.evaluate([fakes[:6]], reference.real_statistics([reals[:6]]))
    assert suite.details(stats, 20) == {"swd": {"num_reals": 6, "num_fakes": 6}, "ms_ssim": {"num_fakes": 6}}
    with pytest.raises(MetricInputError, match="SWD compares equally many images"):
        suite.evaluate([fakes[:4]], stats)


def test_pixel_metrics_refuse_images_of_several_sizes_in_one_line():
    images = [np.zeros((16, 16, 3), np.uint8), np.zeros((16, 20, 3), np.uint8)]
    with pytest.raises(MetricInputError) as error:
        MetricSuite(names=("swd",)).real_statistics([images])
    assert "square images all of one size, got 16x16, 16x20" in str(error.value) and "\n" not in str(error.value)
