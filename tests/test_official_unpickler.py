"""The restricted unpickler: admits official network pickles, refuses everything else and runs nothing."""

import os
import pickle

import numpy as np
import pytest

from pggan.official import unpickler
from pggan.official.errors import SnapshotError, UnsafePickleError
from tests import official_format as fmt


class _MarkerOnSetstate:
    """An arbitrary class whose unpickling (normal pickle) creates a file."""

    def __init__(self, path):
        self.path = path

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        open(state["path"], "w").close()


class _Reduce:
    """Pickles as `function(*args)`, as a malicious file would."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


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
    (g, d, gs), _ = fmt.make_snapshot(dict(resolution=8, fmap_base=16, fmap_max=8), dict(resolution=8, fmap_base=16,
                                                                                          fmap_max=8))
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
    (g, d, gs), _ = fmt.make_snapshot(dict(resolution=8, fmap_base=16, fmap_max=8), dict(resolution=8, fmap_base=16,
                                                                                          fmap_max=8))
    data = fmt.dumps_official((g, d, gs))
    truncated, garbage = tmp_path / "truncated.pkl", tmp_path / "garbage.pkl"
    truncated.write_bytes(data[: len(data) // 2])
    garbage.write_bytes(b"<html>Google Drive - virus scan warning</html>")
    for path, pattern in [(truncated, "truncated or corrupt"), (garbage, "truncated or corrupt"),
                          (tmp_path / "missing.pkl", "no such file"), (tmp_path, "is a directory")]:
        with pytest.raises(SnapshotError, match=pattern) as error:
            unpickler.read_network_pickle(str(path))
        assert "\n" not in str(error.value)


def test_theano_era_pickle_gets_advice(tmp_path):
    path = tmp_path / "network-final.pkl"
    path.write_bytes(b"\x80\x02cnetwork\nNetwork\n)\x81}b.")  # the Theano code's class path, protocol 2
    with pytest.raises(SnapshotError, match="original Theano version"):
        unpickler.read_network_pickle(str(path))
