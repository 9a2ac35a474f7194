"""The torch-free .pth reader, the weights conversion and its cache, and their one-line errors."""

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.metrics_support import random_inception_state_dict, tiny_float_tensors, write_torch_zip_state_dict
from pggan.metrics import inception_weights
from pggan.metrics.errors import UnsafeWeightsFileError, WeightsFileError
from pggan.metrics.inception_weights import (INCEPTION_WEIGHTS, WEIGHTS_URL, convert_state_dict,
                                             expected_state_dict_shapes)
from pggan.metrics.torch_pickle import load_torch_state_dict
from pggan.metrics.weights_files import load_params, resolve_weights_path

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", ["tiny_state_dict.pth", "tiny_state_dict_legacy.pth"])
def test_reads_torch_written_files_exactly(name):
    expected = np.load(GOLDEN / "tiny_state_dict_expected.npz")
    loaded = load_torch_state_dict(GOLDEN / name)
    assert sorted(loaded) == sorted(expected.files)
    for key in expected.files:
        assert loaded[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(loaded[key], expected[key], err_msg=key)
    assert loaded["transposed"].shape == (4, 3)  # a strided view into a shared storage


def test_reads_files_of_torch_before_0_4():
    """torch._utils._rebuild_tensor (no requires_grad): the format of torchvision's vgg16-397923af.pth."""
    loaded = load_torch_state_dict(GOLDEN / "tiny_state_dict_legacy_v1.pth")
    expected = tiny_float_tensors()
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


class _Payload:
    """Unpickling this calls `func(argument)`: what a malicious weights file would do."""

    def __init__(self, func, argument):
        self.func, self.argument = func, argument

    def __reduce__(self):
        return self.func, (self.argument,)


def _malicious_pickles(marker: Path) -> dict[str, bytes]:
    return {
        "os.system": pickle.dumps({"w": _Payload(os.system, f"touch {marker}")}, protocol=2),
        "builtins.eval": pickle.dumps(
            {"w": _Payload(eval, f"open({str(marker)!r}, 'w').close()")}, protocol=2),
    }


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval"])
@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, payload, layout):
    marker = tmp_path / "payload_ran"
    data = _malicious_pickles(marker)[payload]
    path = tmp_path / "evil.pth"
    if layout == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("evil/data.pkl", data)
    else:
        path.write_bytes(data)
    with pytest.raises(UnsafeWeightsFileError, match="refusing global") as error:
        load_torch_state_dict(path)
    assert "\n" not in str(error.value)
    assert payload.split(".")[1] in str(error.value)  # os.system pickles as posix.system
    assert not marker.exists()


@pytest.mark.parametrize("corruption", ["truncated", "garbage", "missing"])
def test_damaged_files_give_one_line_errors(tmp_path, corruption):
    path = tmp_path / "weights.pth"
    if corruption == "truncated":
        path.write_bytes((GOLDEN / "tiny_state_dict_legacy.pth").read_bytes()[:-40])
    elif corruption == "garbage":
        path.write_bytes(b"not a weights file at all" * 10)
    with pytest.raises(WeightsFileError) as error:
        load_torch_state_dict(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_missing_weights_say_where_to_get_them(monkeypatch, tmp_path):
    monkeypatch.delenv(inception_weights.WEIGHTS_ENV, raising=False)
    with pytest.raises(WeightsFileError) as error:
        resolve_weights_path(INCEPTION_WEIGHTS, None)
    message = str(error.value)
    assert WEIGHTS_URL in message and inception_weights.WEIGHTS_ENV in message and "\n" not in message
    with pytest.raises(WeightsFileError, match="does not exist"):
        resolve_weights_path(INCEPTION_WEIGHTS, tmp_path / "nowhere.pth")
    monkeypatch.setenv(inception_weights.WEIGHTS_ENV, str(tmp_path / "also_nowhere.pth"))
    with pytest.raises(WeightsFileError, match="also_nowhere"):
        resolve_weights_path(INCEPTION_WEIGHTS, None)


def test_conversion_rejects_the_wrong_network():
    state = random_inception_state_dict(expected_state_dict_shapes())
    wrong_shape = dict(state, **{"fc.weight": np.zeros((1000, 2048), np.float32)})
    with pytest.raises(WeightsFileError, match="fc.weight has shape"):
        convert_state_dict(wrong_shape)
    missing = {k: v for k, v in state.items() if not k.startswith("Mixed_7c")}
    with pytest.raises(WeightsFileError, match="not the FID Inception"):
        convert_state_dict(missing)
    with pytest.raises(WeightsFileError, match="not the FID Inception"):
        convert_state_dict(dict(state, **{"AuxLogits.fc.weight": np.zeros(3, np.float32)}))


def test_conversion_layout_and_ignored_tensors():
    state = random_inception_state_dict(expected_state_dict_shapes())
    state["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.int64(5)
    params = convert_state_dict(state)
    torch_kernel = state["Mixed_6b.branch7x7_2.conv.weight"]  # [O, I, 1, 7]
    np.testing.assert_array_equal(params["Mixed_6b/branch7x7_2/conv/kernel"],
                                  torch_kernel.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["fc/kernel"], state["fc.weight"].T)
    np.testing.assert_array_equal(params["Mixed_7c/branch_pool/bn/var"],
                                  state["Mixed_7c.branch_pool.bn.running_var"])
    assert len(params) == len(expected_state_dict_shapes())


def test_load_converts_once_and_caches(tmp_path, monkeypatch):
    state = random_inception_state_dict(expected_state_dict_shapes())
    pth = tmp_path / "pt_inception.pth"
    write_torch_zip_state_dict(pth, state)
    monkeypatch.setenv(inception_weights.WEIGHTS_ENV, str(pth))
    cache = tmp_path / "cache"
    params = load_params(INCEPTION_WEIGHTS, cache=cache)
    cached = list(cache.glob("inception_fid_*.npz"))
    assert len(cached) == 1
    np.testing.assert_array_equal(params["Conv2d_1a_3x3/conv/kernel"],
                                  state["Conv2d_1a_3x3.conv.weight"].transpose(2, 3, 1, 0))
    # The cache is what a second load reads: change a value in it and see the change come back.
    with np.load(cached[0]) as data:
        edited = {k: data[k] for k in data.files}
    edited["fc/kernel"] = edited["fc/kernel"] + 1.0
    np.savez(cached[0], **edited)
    np.testing.assert_array_equal(load_params(INCEPTION_WEIGHTS, pth, cache=cache)["fc/kernel"],
                                  params["fc/kernel"] + 1.0)
    cached[0].write_bytes(b"damaged")  # a damaged cache is rebuilt from the .pth
    np.testing.assert_array_equal(load_params(INCEPTION_WEIGHTS, pth, cache=cache)["fc/kernel"],
                                  params["fc/kernel"])
