"""The restricted unpickler: admits official network pickles, refuses everything else and runs nothing."""

import os
import pickle
import re
import time

import numpy as np
import pytest

from pggan.official import snapshot, unpickler
from pggan.official.errors import SnapshotError, UnsafePickleError
from tests import official_format as fmt
from tests import pickle_fuzz


class _MarkerOnSetstate:
    """An arbitrary class whose unpickling (normal pickle) creates a file."""

    def __init__(self, path):
        self.path = path

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        open(state["path"], "w").close()


class _Reduce:
    """Pickles as `function(*args)`, then `__setstate__(state)` unless state is None, as a malicious file would."""

    def __init__(self, function, *args, state=None):
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        return self.function, self.args, self.state


def _payloads(marker):
    return {
        "os.system": _Reduce(os.system, f"touch {marker}"),
        "builtins.eval": _Reduce(eval, f"open({str(marker)!r}, 'w').close()"),
        "arbitrary class": _MarkerOnSetstate(str(marker)),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "arbitrary class"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, kind):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_payloads(marker)[kind], protocol=4)
    pickle.loads(data)  # control: with the ordinary unpickler the payload is live
    assert marker.exists()
    marker.unlink()

    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError, match="refusing to load") as error:
        unpickler.read_network_pickle(str(path))
    assert "\n" not in str(error.value)
    assert not marker.exists()


def test_payload_hidden_inside_a_network_state_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    (g, d, gs), _ = fmt.make_snapshot(
        dict(resolution=8, fmap_base=16, fmap_max=8), dict(resolution=8, fmap_base=16, fmap_max=8)
    )
    g.static_kwargs["fused_scale"] = _Reduce(os.system, f"touch {marker}")
    path = tmp_path / "network-final.pkl"
    path.write_bytes(fmt.dumps_official((g, d, gs)))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        unpickler.read_network_pickle(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("numpy1_paths,protocol", [(True, 4), (False, 4), (False, 5)])
def test_network_states_and_arrays_load(tmp_path, numpy1_paths, protocol):
    """numpy 1.x (official) and numpy 2 reconstructor paths, protocols 4 (official) and 5."""
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    net = fmt.Network("G", "G_paper", {"resolution": 8}, {"lod": np.float32(1.5), "4x4/Dense/weight": weight})
    data = fmt.dumps_official((net, net, net), numpy1_paths=numpy1_paths, protocol=protocol)
    if numpy1_paths:
        assert b"numpy.core.multiarray" in data and b"tfutil" in data
    path = tmp_path / "x.pkl"
    path.write_bytes(data)
    loaded = unpickler.read_network_pickle(str(path))
    assert len(loaded) == 3 and all(isinstance(item, unpickler.NetworkState) for item in loaded)
    state = loaded[0].state
    assert state["version"] == 2 and state["build_func_name"] == "G_paper"
    variables = dict(state["variables"])
    np.testing.assert_array_equal(variables["4x4/Dense/weight"], weight)
    assert variables["lod"] == np.float32(1.5)


def test_truncated_missing_and_non_pickle_files_give_one_line_errors(tmp_path):
    (g, d, gs), _ = fmt.make_snapshot(
        dict(resolution=8, fmap_base=16, fmap_max=8), dict(resolution=8, fmap_base=16, fmap_max=8)
    )
    data = fmt.dumps_official((g, d, gs))
    truncated, garbage = tmp_path / "truncated.pkl", tmp_path / "garbage.pkl"
    truncated.write_bytes(data[: len(data) // 2])
    garbage.write_bytes(b"<html>Google Drive - virus scan warning</html>")
    for path, pattern in [
        (truncated, "truncated or corrupt"),
        (garbage, "truncated or corrupt"),
        (tmp_path / "missing.pkl", "no such file"),
        (tmp_path, "is a directory"),
    ]:
        with pytest.raises(SnapshotError, match=pattern) as error:
            unpickler.read_network_pickle(str(path))
        assert "\n" not in str(error.value)


def test_theano_era_pickle_gets_advice(tmp_path):
    path = tmp_path / "network-final.pkl"
    path.write_bytes(b"\x80\x02cnetwork\nNetwork\n)\x81}b.")  # the Theano code's class path, protocol 2
    with pytest.raises(SnapshotError, match="original Theano version"):
        unpickler.read_network_pickle(str(path))


_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's own, pickled under numpy's module path
_SCALAR = np.float32(0).__reduce__()[0]


def _array(shape, dtype, data, placeholder=(0,)):
    """Pickles as numpy pickles an array: `_reconstruct(ndarray, placeholder, b'b')`, then its state."""
    return _Reduce(_RECONSTRUCT, np.ndarray, placeholder, b"b", state=(1, shape, dtype, False, data))


def _dtype(name, state=(3, "<", None, None, None, -1, -1, 0)):
    """Pickles as numpy pickles a dtype: `dtype(name, False, True)`, then its state."""
    return _Reduce(np.dtype, name, False, True, state=state)


def _hostile_pickles():
    shared = bytes(4096)
    return {
        "bytearray(10**10)": (
            b"\x80\x03cbuiltins\nbytearray\n\x8a\x05\x00\xe4\x0bT\x02\x85R.",
            "refusing to load builtins.bytearray",
        ),
        "bytearray(10**10), Python 2 name": (
            b"\x80\x02c__builtin__\nbytearray\n\x8a\x05\x00\xe4\x0bT\x02\x85R.",
            "refusing to load __builtin__.bytearray",
        ),
        "bytes declared beyond the file": (
            b"\x80\x04\x8e" + (10**10).to_bytes(8, "little") + b"x.",
            "expected 10000000000 bytes in a bytes8, but only 2 remain",
        ),
        "memo index far beyond the file": (
            b"\x80\x02Nr" + (2**26).to_bytes(4, "little") + b".",
            "memo index 67108864 after only 2 opcodes",
        ),
        # Read straight through, BINBYTES8 holds 4 bytes; CPython reads its length from after the frame: 4 GiB.
        "opcode straddling its frame": (
            b"\x80\x04\x95"
            + (5).to_bytes(8, "little")
            + b"\x8e\x04\x00\x00\x00"
            + b"\x00\x00\x00\x00"
            + b"\x01\x00\x00\x00.",
            "the opcode at byte 11 straddles the end of its frame",
        ),
        "array shape beyond its data": (
            pickle.dumps(_array((100, 100), np.dtype("f4"), b""), protocol=4),
            r"array shape \(100, 100\) has more elements than the file has bytes",
        ),
        "array dimension beyond the file": (
            pickle.dumps(_array((10**12, 0), np.dtype("f4"), b""), protocol=4),
            r"array dimension 1000000000000 is outside \[0, \d+\]",
        ),
        "array data shorter than its shape": (
            pickle.dumps(_array((4,), np.dtype("f4"), bytes(8)), protocol=4),
            "data is not the 16 bytes its shape and type need",
        ),
        "object array": (
            pickle.dumps(_array((10**8,), np.dtype(object), []), protocol=4),
            "element type is not a plain number type",
        ),
        "structured dtype": (
            pickle.dumps(_array((1,), _dtype("f4", (3, "|", None, ("a",), {}, 4, 1, 16)), bytes(4)), protocol=4),
            "has a state other than a byte order",
        ),
        "scalar of a 10 GB type": (
            pickle.dumps(_Reduce(_SCALAR, _dtype("V10000000000")), protocol=4),
            "element type is not a plain number type",
        ),
        "arrays sharing their data": (
            pickle.dumps(
                [_array((1024,), np.dtype("f4"), shared)] * 3
                + [_array((1024,), np.dtype("f4"), shared) for _ in range(10)],
                protocol=4,
            ),
            r"the arrays would need 4096 bytes, more than the \d+-byte file holds",
        ),
    }


def _read(path):
    return unpickler.read_network_pickle(str(path))


@pytest.mark.parametrize("case", sorted(_hostile_pickles()))
def test_pickles_asking_for_more_than_the_file_holds_are_refused(tmp_path, case):
    """Each would allocate gigabytes (or read memory it does not own) if admitted; pickle_fuzz checks it does not."""
    data, reason = _hostile_pickles()[case]
    error = pickle_fuzz.refusal(_read, data, tmp_path / "network.pkl", SnapshotError)
    assert re.search(reason, str(error)), error


def test_the_reconstruct_placeholder_is_never_allocated(tmp_path):
    """numpy's `_reconstruct` allocates its placeholder shape; the stand-in ignores it (state gives the shape)."""
    data = pickle.dumps(
        _array(
            (2,),
            _dtype("f4", (3, ">", None, None, None, -1, -1, 0)),
            b"?\x80\x00\x00@\x00\x00\x00",
            placeholder=(10**10,),
        ),
        protocol=4,
    )
    path = tmp_path / "network.pkl"
    assert pickle_fuzz.run_fuzz(_read, [("the file", data)], path, SnapshotError) == [None]
    np.testing.assert_array_equal(unpickler.read_network_pickle(str(path)), np.array([1.0, 2.0], np.float32))


def _load_snapshot_and_spec(path):
    snapshot.model_spec(snapshot.load_snapshot(str(path)))


def test_fuzzed_network_pickles_load_or_fail_with_one_line_errors(tmp_path):
    """Seeded mutations of a tiny official snapshot: protocol 4 with numpy 1.x paths (framed, as the official
    code writes it, and without frames, where splices reach deeper) and protocol 5 with numpy 2 paths."""
    static = dict(resolution=8, fmap_base=4, fmap_max=2, num_channels=1)
    networks, _ = fmt.make_snapshot(dict(static), dict(static))
    official = fmt.dumps_official(networks)
    bases = [
        official,
        pickle_fuzz.strip_frames(official),
        pickle_fuzz.strip_frames(fmt.dumps_official(networks, numpy1_paths=False, protocol=5)),
    ]
    path = tmp_path / "network-snapshot.pkl"
    assert (
        pickle_fuzz.run_fuzz(
            _load_snapshot_and_spec, [(f"base {i}", b) for i, b in enumerate(bases)], path, SnapshotError
        )
        == [None] * 3
    )
    start = time.process_time()
    outcomes = []
    for seed, base in enumerate(bases):
        outcomes += pickle_fuzz.run_fuzz(
            _load_snapshot_and_spec, pickle_fuzz.mutants(base, 700, seed), path, SnapshotError
        )
    assert len(outcomes) == 2100 and 0 < outcomes.count(None) < 2100
    assert time.process_time() - start < 30
