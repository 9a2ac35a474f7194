"""Writes synthetic official PGGAN network pickles, in the exact format the official code writes.

The official `train.py` saves `(G, D, Gs)` with `pickle.dump(..., protocol=HIGHEST_PROTOCOL)` under
Python 3.6 (protocol 4) and numpy 1.x. Each object is a `tfutil.Network`, pickled as the class path
`tfutil.Network` plus the dict its `__getstate__` returns (version 2). Variables are `(local name,
value)` in creation order of the template graph; the scalar 'lod' is a numpy float32 scalar.

Here a stand-in class with the class path `tfutil.Network` is registered in a fake `tfutil` module while
pickling, and numpy's reconstructors are written under their numpy 1.x paths (`numpy.core.multiarray`).
Variable names and shapes follow the official `networks.py` (G_paper, D_paper); the weights are random.
"""

from __future__ import annotations

import contextlib
import io
import math
import pickle
import sys
import types

import numpy as np

# The part of a networks.py the importer reads: the build functions' keyword defaults as released, and
# the 4x4 dense call with its gain. A real snapshot stores the complete module source here.
BUILD_MODULE_SRC = """
import numpy as np

def G_paper(latents_in, labels_in, num_channels=1, resolution=32, label_size=0, fmap_base=8192,
            fmap_decay=1.0, fmap_max=512, latent_size=None, normalize_latents=True, use_wscale=True,
            use_pixelnorm=True, pixelnorm_epsilon=1e-8, use_leakyrelu=True, dtype='float32',
            fused_scale=True, structure=None, is_template_graph=False, **kwargs):
    x = dense(x, fmaps=nf(res-1)*16, gain=np.sqrt(2)/4, use_wscale=use_wscale)

def D_paper(images_in, num_channels=1, resolution=32, label_size=0, fmap_base=8192, fmap_decay=1.0,
            fmap_max=512, use_wscale=True, mbstd_group_size=4, dtype='float32', fused_scale=True,
            structure=None, is_template_graph=False, **kwargs):
    pass
"""

G_DEFAULTS = dict(
    num_channels=1,
    resolution=32,
    label_size=0,
    fmap_base=8192,
    fmap_decay=1.0,
    fmap_max=512,
    latent_size=None,
    normalize_latents=True,
    use_wscale=True,
    use_pixelnorm=True,
    pixelnorm_epsilon=1e-8,
    use_leakyrelu=True,
    dtype="float32",
    fused_scale=True,
)
D_DEFAULTS = dict(
    num_channels=1,
    resolution=32,
    label_size=0,
    fmap_base=8192,
    fmap_decay=1.0,
    fmap_max=512,
    use_wscale=True,
    mbstd_group_size=4,
    dtype="float32",
    fused_scale=True,
)


class Network:
    """Stand-in for `tfutil.Network`: pickles exactly as the official class does (`__getstate__`)."""

    def __init__(self, name, build_func_name, static_kwargs, variables, build_module_src=BUILD_MODULE_SRC):
        self.name = name
        self.static_kwargs = dict(static_kwargs)
        self._build_func_name = build_func_name
        self._build_module_src = build_module_src
        self.vars = dict(variables)  # name -> value, in creation order

    def __getstate__(self):
        return {
            "version": 2,
            "name": self.name,
            "static_kwargs": self.static_kwargs,
            "build_module_src": self._build_module_src,
            "build_func_name": self._build_func_name,
            "variables": list(zip(self.vars.keys(), self.vars.values())),
        }


Network.__module__ = "tfutil"
Network.__qualname__ = "Network"


@contextlib.contextmanager
def fake_tfutil_module():
    """Makes `tfutil.Network` resolvable (as the stand-in) while pickling."""
    module = types.ModuleType("tfutil")
    module.Network = Network
    saved = sys.modules.get("tfutil")
    sys.modules["tfutil"] = module
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["tfutil"]
        else:
            sys.modules["tfutil"] = saved


_NUMPY1_PATHS = {
    np.zeros(1).__reduce__()[0]: ("numpy.core.multiarray", "_reconstruct"),
    np.float32(0).__reduce__()[0]: ("numpy.core.multiarray", "scalar"),
}


class _Numpy1Pickler(pickle._Pickler):
    """Pure-Python pickler that names numpy's reconstructors by their numpy 1.x module paths."""

    def save_global(self, obj, name=None):
        path = _NUMPY1_PATHS.get(obj) if self.proto >= 4 else None
        if path is None:
            return super().save_global(obj, name)
        self.save(path[0])
        self.save(path[1])
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)


def dumps_official(obj, *, numpy1_paths: bool = True, protocol: int = 4) -> bytes:
    """Pickles `obj` (holding stand-in Networks) as the official code would."""
    buffer = io.BytesIO()
    with fake_tfutil_module():
        if numpy1_paths:
            _Numpy1Pickler(buffer, protocol=protocol).dump(obj)
        else:
            pickle.dump(obj, buffer, protocol=protocol)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# Official variable names and shapes (template graph, 'linear' structure, creation order)


def _nf(kw, stage):
    return min(int(kw["fmap_base"] / (2.0 ** (stage * kw["fmap_decay"]))), kw["fmap_max"])


def g_variable_shapes(kw) -> dict:
    """G_paper's variables: name -> shape ('lod' first, as created)."""
    log2 = int(math.log2(kw["resolution"]))
    latent = kw["latent_size"] if kw["latent_size"] is not None else _nf(kw, 0)
    nc = kw["num_channels"]
    shapes = {"lod": ()}
    shapes["4x4/Dense/weight"] = (latent + kw["label_size"], _nf(kw, 1) * 16)
    shapes["4x4/Dense/bias"] = (_nf(kw, 1),)
    shapes["4x4/Conv/weight"] = (3, 3, _nf(kw, 1), _nf(kw, 1))
    shapes["4x4/Conv/bias"] = (_nf(kw, 1),)
    shapes[f"ToRGB_lod{log2 - 2}/weight"] = (1, 1, _nf(kw, 1), nc)
    shapes[f"ToRGB_lod{log2 - 2}/bias"] = (nc,)
    for res in range(3, log2 + 1):
        scope, cin, cout = f"{2**res}x{2**res}", _nf(kw, res - 2), _nf(kw, res - 1)
        if kw["fused_scale"]:
            shapes[f"{scope}/Conv0_up/weight"] = (3, 3, cout, cin)
            shapes[f"{scope}/Conv0_up/bias"] = (cout,)
        else:
            shapes[f"{scope}/Conv0/weight"] = (3, 3, cin, cout)
            shapes[f"{scope}/Conv0/bias"] = (cout,)
        shapes[f"{scope}/Conv1/weight"] = (3, 3, cout, cout)
        shapes[f"{scope}/Conv1/bias"] = (cout,)
        shapes[f"ToRGB_lod{log2 - res}/weight"] = (1, 1, cout, nc)
        shapes[f"ToRGB_lod{log2 - res}/bias"] = (nc,)
    return shapes


def d_variable_shapes(kw) -> dict:
    """D_paper's variables: name -> shape ('lod' first, as created)."""
    log2 = int(math.log2(kw["resolution"]))
    nc = kw["num_channels"]
    shapes = {"lod": ()}
    shapes["FromRGB_lod0/weight"] = (1, 1, nc, _nf(kw, log2 - 1))
    shapes["FromRGB_lod0/bias"] = (_nf(kw, log2 - 1),)
    for res in range(log2, 2, -1):
        scope = f"{2**res}x{2**res}"
        shapes[f"{scope}/Conv0/weight"] = (3, 3, _nf(kw, res - 1), _nf(kw, res - 1))
        shapes[f"{scope}/Conv0/bias"] = (_nf(kw, res - 1),)
        down = "Conv1_down" if kw["fused_scale"] else "Conv1"
        shapes[f"{scope}/{down}/weight"] = (3, 3, _nf(kw, res - 1), _nf(kw, res - 2))
        shapes[f"{scope}/{down}/bias"] = (_nf(kw, res - 2),)
        shapes[f"FromRGB_lod{log2 - res + 1}/weight"] = (1, 1, nc, _nf(kw, res - 2))
        shapes[f"FromRGB_lod{log2 - res + 1}/bias"] = (_nf(kw, res - 2),)
    extra = 1 if kw["mbstd_group_size"] > 1 else 0
    shapes["4x4/Conv/weight"] = (3, 3, _nf(kw, 1) + extra, _nf(kw, 1))
    shapes["4x4/Conv/bias"] = (_nf(kw, 1),)
    shapes["4x4/Dense0/weight"] = (_nf(kw, 1) * 16, _nf(kw, 0))
    shapes["4x4/Dense0/bias"] = (_nf(kw, 0),)
    shapes["4x4/Dense1/weight"] = (_nf(kw, 0), 1 + kw["label_size"])
    shapes["4x4/Dense1/bias"] = (1 + kw["label_size"],)
    return shapes


def random_variables(shapes: dict, rng: np.random.Generator, lod: float) -> dict:
    """Weights N(0, 1) (equalized-LR storage), biases N(0, 0.5) so their layout matters, 'lod' a float32 scalar."""
    variables = {}
    for name, shape in shapes.items():
        if name == "lod":
            variables[name] = np.float32(lod)
        else:
            scale = 0.5 if name.endswith("bias") else 1.0
            variables[name] = (scale * rng.standard_normal(shape)).astype(np.float32)
    return variables


def make_snapshot(static_g: dict, static_d: dict, *, seed: int = 0, lod: float = 0.0):
    """Stand-in (G, D, Gs) with random weights; Gs has weights of its own (as an EMA would).

    static_g / static_d: the static_kwargs given to the networks (as train.py passes num_channels,
    resolution, label_size and the config's extras); unspecified settings take the official defaults.
    Returns ((G, D, Gs), (g_settings, d_settings)) with the effective settings.
    """
    g_kw, d_kw = {**G_DEFAULTS, **static_g}, {**D_DEFAULTS, **static_d}
    rng = np.random.default_rng(seed)
    g = Network("G", "G_paper", static_g, random_variables(g_variable_shapes(g_kw), rng, lod))
    d = Network("D", "D_paper", static_d, random_variables(d_variable_shapes(d_kw), rng, lod))
    gs = Network("Gs", "G_paper", static_g, random_variables(g_variable_shapes(g_kw), rng, lod))
    return (g, d, gs), (g_kw, d_kw)


def write_snapshot(path, static_g: dict, static_d: dict, **kwargs):
    """Writes a synthetic official pickle to `path`; returns ((G, D, Gs), (g_settings, d_settings))."""
    networks, settings = make_snapshot(static_g, static_d, **kwargs)
    with open(path, "wb") as file:
        file.write(dumps_official(networks))
    return networks, settings
