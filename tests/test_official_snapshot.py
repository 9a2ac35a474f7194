"""Snapshot interpretation: settings from the stored source, and one-line errors for what cannot be imported."""

import numpy as np
import pytest

from pggan.official import convert, snapshot
from pggan.official.errors import SnapshotError
from tests import official_format as fmt

STATIC = dict(num_channels=3, resolution=8, label_size=0, fmap_base=32, fmap_max=16)


def _write(tmp_path, networks, name="snapshot.pkl"):
    path = tmp_path / name
    path.write_bytes(fmt.dumps_official(networks))
    return str(path)


def _interpret(path):
    """Everything the importer does short of writing the checkpoint."""
    loaded = snapshot.load_snapshot(path)
    spec = snapshot.model_spec(loaded)
    snapshot.fade_state(spec, loaded.generator_ema.lod)
    convert.generator_parameters(loaded.generator, spec)
    convert.generator_parameters(loaded.generator_ema, spec)
    convert.discriminator_parameters(loaded.discriminator, spec)
    return spec


def _snapshot(**kwargs):
    (g, d, gs), _ = fmt.make_snapshot(dict(STATIC), dict(STATIC), **kwargs)
    return g, d, gs


def test_settings_default_to_the_stored_source_and_static_kwargs_override(tmp_path):
    g, d, gs = _snapshot()
    source = (
        fmt.BUILD_MODULE_SRC.replace("use_pixelnorm=True", "use_pixelnorm=False")
        .replace("pixelnorm_epsilon=1e-8", "pixelnorm_epsilon=1e-4")
        .replace("mbstd_group_size=4", "mbstd_group_size=2")
    )
    for net in (g, d, gs):
        net._build_module_src = source
    g.static_kwargs["normalize_latents"] = gs.static_kwargs["normalize_latents"] = False
    g.static_kwargs["a_theano_only_option"] = gs.static_kwargs["a_theano_only_option"] = 7  # ignored, as officially
    spec = _interpret(_write(tmp_path, (g, d, gs)))
    assert (spec.use_pixelnorm, spec.pixelnorm_epsilon, spec.mbstd_group_size) == (False, 1e-4, 2)
    assert spec.normalize_latents is False
    assert spec.latent_size == 16  # latent_size=None: official nf(0) = min(fmap_base, fmap_max)


def test_fade_state_follows_the_official_lod():
    spec = snapshot.networks.ModelSpec(resolution=32, fmap_base=64, fmap_max=16)
    assert snapshot.fade_state(spec, 0.0) == (32, 1.0)
    assert snapshot.fade_state(spec, 1.25) == (16, 0.75)
    assert snapshot.fade_state(spec, 3.0) == (4, 1.0)
    with pytest.raises(SnapshotError, match="outside"):
        snapshot.fade_state(spec, 3.5)


def _set(net_index, key, value):
    def edit(networks):
        for i in (0, 2) if net_index == "G" else (1,):
            networks[i].static_kwargs[key] = value

    return edit


def _variables(net_index, edit_vars):
    def edit(networks):
        edit_vars(networks[net_index].vars)

    return edit


def _source(old, new):
    def edit(networks):
        for net in networks:
            net._build_module_src = net._build_module_src.replace(old, new)

    return edit


def _theano(networks):
    networks[0].__getstate__ = lambda: {"build_func_spec": {"func": "G_paper"}, "param_values": []}


def _state(key, value):
    def edit(networks):
        state = networks[0].__getstate__()
        networks[0].__getstate__ = lambda: {**state, key: value}

    return edit


def _build_func(name):
    def edit(networks):
        networks[0]._build_func_name = name

    return edit


ERRORS = {
    "relu generator": (_set("G", "use_leakyrelu", False), "use_leakyrelu=False"),
    "unknown structure": (_set("D", "structure", "fancy"), "structure='fancy'"),
    "float64 activations": (_set("G", "dtype", "float64"), "dtype='float64'"),
    "G and D disagree": (_set("D", "fmap_max", 8), "disagree on fmap_max"),
    "4x4 network": (lambda n: [net.static_kwargs.update(resolution=4) for net in n], "resolution must be"),
    "other build function": (_build_func("G_mnist_mode_recovery"), "only the paper's networks"),
    "Theano-era state": (_theano, "original Theano version"),
    "pre-release G": (_source("gain=np.sqrt(2)/4, ", ""), "pre-release"),
    "pre-release D": (_source("    pass", "    x = downscale2d_stride(images_in, 2)"), "pre-release"),
    "missing variable": (_variables(1, lambda v: v.pop("8x8/Conv1_down/weight")), "lacks the variable"),
    "extra variable": (
        _variables(0, lambda v: v.update({"8x8/Conv2/weight": np.zeros(3, np.float32)})),
        "has variables",
    ),
    "wrong shape": (
        _variables(2, lambda v: v.update({"8x8/Conv1/weight": np.zeros((3, 3, 8, 4), np.float32)})),
        "has shape",
    ),
    "integer variable": (
        _variables(0, lambda v: v.update({"4x4/Conv/bias": np.zeros(16, np.int32)})),
        "not a floating-point array",
    ),
    "NaN weights": (_variables(1, lambda v: v["4x4/Dense0/weight"].__setitem__((0, 0), np.nan)), "NaN"),
    "lod beyond the 4x4 stage": (_variables(2, lambda v: v.update(lod=np.float32(5.0))), "outside"),
    "array as the state version": (_state("version", np.arange(3)), "state version a PickledArray"),
    "list as the build function": (_state("build_func_name", ["G_paper"]), "built by a list"),
    "list as the name": (_state("name", ["G"]), "name is a list"),
    "list as a setting": (_set("G", "fmap_base", [32]), r"setting fmap_base \(a list\) is not None"),
    "setting beyond 64 bits": (_set("G", "fmap_base", 10**30), r"setting fmap_base \(a int\) is not None"),
    "source of megabytes": (
        _source("    pass", "    pass\n" + "#" * (1 << 20)),
        r"has 10[0-9]{5} characters; the official networks.py has about 20,000",
    ),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_unsupported_snapshots_give_one_line_errors(tmp_path, case):
    edit, pattern = ERRORS[case]
    networks = list(_snapshot(lod=0.0))
    edit(networks)
    with pytest.raises(SnapshotError, match=pattern) as error:
        _interpret(_write(tmp_path, tuple(networks)))
    assert "\n" not in str(error.value)


def test_a_pickle_that_is_not_g_d_gs_is_refused(tmp_path):
    g, _, _ = _snapshot()
    for obj in (g, (g, g), {"G": g}):
        with pytest.raises(SnapshotError, match=r"not the tuple \(G, D, Gs\)"):
            snapshot.load_snapshot(_write(tmp_path, obj))


def test_float16_networks_are_imported_as_float32(tmp_path):
    g, d, gs = _snapshot()
    for net in (g, d, gs):
        net.static_kwargs["dtype"] = "float16"
        net.vars = {
            name: np.asarray(value).astype(np.float16) if name != "lod" else value for name, value in net.vars.items()
        }
    path = _write(tmp_path, (g, d, gs))
    spec = _interpret(path)
    params = convert.generator_parameters(snapshot.load_snapshot(path).generator_ema, spec)
    kernel = params["blocks"][1]["conv1"]["kernel"]
    assert kernel.dtype == np.float32 and spec.compute_dtype == "float32"
    np.testing.assert_array_equal(kernel, gs.vars["8x8/Conv1/weight"].astype(np.float32))
