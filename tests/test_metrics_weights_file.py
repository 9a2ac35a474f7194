"""The torch-free .pth reader, the weights conversion and its cache, and their one-line errors."""

import io
import itertools
import os
import pickle
import re
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pggan.metrics import inception_weights
from pggan.metrics.errors import UnsafeWeightsFileError, WeightsFileError
from pggan.metrics.inception_weights import (
    INCEPTION_WEIGHTS,
    WEIGHTS_URL,
    convert_state_dict,
    expected_state_dict_shapes,
)
from pggan.metrics.torch_pickle import load_torch_state_dict
from pggan.metrics.weights_files import load_params, resolve_weights_path
from tests import pickle_fuzz
from tests.metrics_support import (
    random_inception_state_dict,
    tiny_float_tensors,
    torch_state_dict_pickle,
    torch_storages,
    write_torch_zip,
    write_torch_zip_state_dict,
)

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
        "builtins.eval": pickle.dumps({"w": _Payload(eval, f"open({str(marker)!r}, 'w').close()")}, protocol=2),
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


def _tiny_tensors() -> dict[str, np.ndarray]:
    return {"w": np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "b": np.array([0.5, -1.5, 2.0], np.float32)}


def _refusal(tmp_path, data: bytes) -> str:
    """The one-line error of a hostile file (no crash, no allocation beyond the file's size: pickle_fuzz)."""
    path = tmp_path / "hostile.pth"
    message = str(pickle_fuzz.refusal(load_torch_state_dict, data, path, WeightsFileError))
    assert message.startswith(f"{path} is not a valid PyTorch weights file (") and "download it again" in message
    return message


def _zip_bytes(data_pkl: bytes, storages: list[bytes]) -> bytes:
    buffer = io.BytesIO()
    write_torch_zip(buffer, data_pkl, storages)
    return buffer.getvalue()


# Tensor 'w' views a storage of 12 float32: (storage offset, size, stride) -> the refusal's reason.
HOSTILE_LAYOUTS = {
    "negative storage offset": ((-63, (64,), (1,)), r"storage offset -63 is outside \[0, 12\]"),
    "negative offset, huge size (segfaulted)": ((-(10**9), (10**9,), (1,)), "storage offset -1000000000 is outside"),
    "huge storage offset": ((10**12, (4,), (1,)), "storage offset 1000000000000 is outside"),
    "offset + size beyond the storage": ((10, (4,), (1,)), "reaches element 13 of a 12-element storage"),
    "huge stride": ((0, (2, 2), (2**40, 1)), "stride 1099511627776 is outside"),
    "stride beyond the storage": ((0, (3, 4), (5, 1)), "reaches element 13 of a 12-element storage"),
    "negative stride": ((11, (12,), (-1,)), "stride -1 is outside"),
    "huge size": ((0, (2**62,), (0,)), "array dimension 4611686018427387904 is outside"),
    "65 dimensions": ((0, (1,) * 65, (0,) * 65), "at most 64 sizes"),
    "fewer strides than sizes": ((0, (3, 4), (1,)), "strides do not match its sizes"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_LAYOUTS))
def test_tensor_layouts_beyond_their_storage_are_refused(tmp_path, case):
    layout, reason = HOSTILE_LAYOUTS[case]
    path = tmp_path / "weights.pth"
    write_torch_zip_state_dict(path, _tiny_tensors(), {"w": layout})
    assert re.search(reason, _refusal(tmp_path, path.read_bytes()))


def test_valid_unusual_layouts_load(tmp_path):
    """Zero-size tensors (any strides), strides of size-1 axes and views ending at the storage's end."""
    path = tmp_path / "weights.pth"
    layouts = {"w": (12, (0, 5), (5, 1)), "b": (2, (1, 1), (99, 1))}
    write_torch_zip_state_dict(path, _tiny_tensors(), layouts)
    loaded = load_torch_state_dict(path)
    assert loaded["w"].shape == (0, 5) and loaded["w"].dtype == np.float32
    np.testing.assert_array_equal(loaded["b"], [[2.0]])


def test_views_cannot_multiply_the_file(tmp_path):
    """A stride-0 view larger than the whole file (copied out, it would multiply the file) is refused."""
    tensors = _tiny_tensors()
    file_size = len(_zip_bytes(torch_state_dict_pickle(tensors), torch_storages(tensors)))  # sizes are fixed-width
    layout = (0, (file_size // 2,), (0,))
    data = _zip_bytes(torch_state_dict_pickle(tensors, {"w": layout}), torch_storages(tensors))
    assert re.search(r"the tensors would need \d+ bytes, more than the \d+-byte file holds", _refusal(tmp_path, data))


def _with_storage_size(data_pkl: bytes, numel: bytes) -> bytes:
    """Storage 0 (12 floats) declared with another element count (a pickled int)."""
    return data_pkl.replace(b"cpuJ\x0c\x00\x00\x00", b"cpu" + numel, 1)


def _patch_zip_sizes(data: bytes, member: str, size: int) -> bytes:
    """The zip with `member`'s sizes in its central directory record (what zipfile trusts) set to `size`."""
    record = data.index(b"PK\x01\x02")
    while data[record + 46 : record + 46 + struct.unpack_from("<H", data, record + 28)[0]] != member.encode():
        record = data.index(b"PK\x01\x02", record + 4)
    return data[: record + 20] + struct.pack("<II", size, size) + data[record + 28 :]


def _tensor_viewing_a_tensor(data_pkl: bytes) -> bytes:
    """The data.pkl with tensor 'b' rebuilt on tensor 'w' (memoized as 0) instead of on a storage."""
    w_end = data_pkl.index(b"tR") + 2  # TUPLE, REDUCE: the end of tensor 'w'
    data = data_pkl[:w_end] + b"q\x00" + data_pkl[w_end:]  # BINPUT 0
    b_arguments = data.index(b"_rebuild_tensor_v2\n(", w_end) + len(b"_rebuild_tensor_v2\n(")
    return data[:b_arguments] + b"h\x00" + data[data.index(b"Q", b_arguments) + 1 :]  # BINGET 0 for the storage


def _storage_cases(tensors) -> dict[str, tuple[bytes, str]]:
    data_pkl, storages = torch_state_dict_pickle(tensors), torch_storages(tensors)
    valid = _zip_bytes(data_pkl, storages)
    legacy = (GOLDEN / "tiny_state_dict_legacy.pth").read_bytes()
    deflated = io.BytesIO()
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
    return {
        "storage declared larger than the file": (
            _zip_bytes(_with_storage_size(data_pkl, b"J\x00\x00\x01\x00"), storages),
            "storage size 65536 is outside",
        ),
        "storage declared larger than its entry": (
            _zip_bytes(_with_storage_size(data_pkl, b"Jd\x00\x00\x00"), storages),
            "storage '0' is truncated",
        ),
        "zip entry declared larger than the file": (
            _patch_zip_sizes(valid, "archive/data/0", 2**31 - 1),
            "the zip entries would need 2147483647 bytes",
        ),
        "compressed zip entry": (deflated.getvalue(), "zip entry archive/data.pkl is not stored as torch.save"),
        "bytes declared beyond the pickle": (
            _zip_bytes(b"\x80\x04\x8e" + (2**31).to_bytes(8, "little") + b"x.", storages),
            "expected 2147483648 bytes in a bytes8",
        ),
        "memo index far beyond the pickle": (
            _zip_bytes(b"\x80\x02Nr" + (2**26).to_bytes(4, "little") + b".", storages),
            "memo index 67108864 after only 2 opcodes",
        ),
        "tensor viewing a tensor": (
            _zip_bytes(_tensor_viewing_a_tensor(data_pkl), storages),
            "a tensor without a storage",
        ),
        "legacy storage declared larger than the file": (
            legacy.replace(b"cpuq\x06K\x18", b"cpuq\x06J\x00\xe1\xf5\x05", 1),
            "storage size 100000000 is outside",
        ),
    }


@pytest.mark.parametrize("case", sorted(_storage_cases(_tiny_tensors())))
def test_storages_and_pickles_beyond_the_file_are_refused(tmp_path, case):
    data, reason = _storage_cases(_tiny_tensors())[case]
    assert reason in _refusal(tmp_path, data)


def test_fuzzed_weights_files_load_or_fail_with_one_line_errors(tmp_path):
    """Seeded mutations of a zip's data.pkl (re-zipped), of a torch-written zip and of a legacy file."""
    tensors = _tiny_tensors()
    data_pkl, storages = torch_state_dict_pickle(tensors), torch_storages(tensors)
    cases = itertools.chain(
        ((f"data.pkl: {d}", _zip_bytes(m, storages)) for d, m in pickle_fuzz.mutants(data_pkl, 1200, seed=1)),
        (
            (f"zip: {d}", m)
            for d, m in pickle_fuzz.mutants((GOLDEN / "tiny_state_dict.pth").read_bytes(), 400, seed=2, pickles=0)
        ),
        (
            (f"legacy: {d}", m)
            for d, m in pickle_fuzz.mutants(
                (GOLDEN / "tiny_state_dict_legacy.pth").read_bytes(), 1200, seed=3, pickles=5
            )
        ),
    )
    start = time.process_time()
    outcomes = pickle_fuzz.run_fuzz(load_torch_state_dict, cases, tmp_path / "fuzzed.pth", WeightsFileError)
    assert len(outcomes) == 2800 and 0 < outcomes.count(None) < 2800
    assert time.process_time() - start < 30


def test_read_errors_give_one_line_errors(tmp_path, monkeypatch):
    def failing_read(path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(zipfile, "is_zipfile", failing_read)
    with pytest.raises(WeightsFileError, match="cannot read weights file .*: Input/output error$"):
        load_torch_state_dict(GOLDEN / "tiny_state_dict.pth")


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
    np.testing.assert_array_equal(params["Mixed_6b/branch7x7_2/conv/kernel"], torch_kernel.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["fc/kernel"], state["fc.weight"].T)
    np.testing.assert_array_equal(params["Mixed_7c/branch_pool/bn/var"], state["Mixed_7c.branch_pool.bn.running_var"])
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
    np.testing.assert_array_equal(
        params["Conv2d_1a_3x3/conv/kernel"], state["Conv2d_1a_3x3.conv.weight"].transpose(2, 3, 1, 0)
    )
    # The cache is what a second load reads: change a value in it and see the change come back.
    with np.load(cached[0]) as data:
        edited = {k: data[k] for k in data.files}
    edited["fc/kernel"] = edited["fc/kernel"] + 1.0
    np.savez(cached[0], **edited)
    np.testing.assert_array_equal(
        load_params(INCEPTION_WEIGHTS, pth, cache=cache)["fc/kernel"], params["fc/kernel"] + 1.0
    )
    cached[0].write_bytes(b"damaged")  # a damaged cache is rebuilt from the .pth
    np.testing.assert_array_equal(load_params(INCEPTION_WEIGHTS, pth, cache=cache)["fc/kernel"], params["fc/kernel"])
