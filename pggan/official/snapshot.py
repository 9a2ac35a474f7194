"""Interpreting an official `(G, D, Gs)` snapshot: network states, build settings, the pggan ModelSpec.

A `tfutil.Network` state (official `tfutil.py`, `Network.__getstate__`, version 2) holds
  'name', 'build_func_name' ('G_paper' / 'D_paper'), 'static_kwargs' (the keyword arguments given at
  construction), 'build_module_src' (the full source of the `networks.py` used for training) and
  'variables' (a list of `(local variable name, numpy array)`).
The official loader re-executes that source, so the defaults of every setting NOT in static_kwargs
come from the stored source. Here the source is only parsed (`ast`), never executed: the build
function's literal keyword defaults are read and overridden by static_kwargs, as the official call does.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
import warnings
from typing import Any

import numpy as np

from pggan.model import networks
from pggan.official import unpickler
from pggan.official.errors import THEANO_PICKLE_MESSAGE, SnapshotError
from pggan.safe_unpickling import one_line

BUILD_FUNCTIONS = {"generator": "G_paper", "discriminator": "D_paper"}
ROLES = ("generator", "discriminator", "generator_ema")  # the order of the official (G, D, Gs) tuple
SUPPORTED_STRUCTURES = (None, "linear", "recursive")  # two graph layouts of the same function
MAX_SOURCE_CHARS = 1 << 20  # build_module_src: the official networks.py is ~20 KB
SUPPORTED_DTYPES = ("float32", "float16")  # float16 networks keep float32 variables; pggan runs them in float32


@dataclasses.dataclass(frozen=True)
class OfficialNetwork:
    """One official network.

    role: 'generator', 'discriminator' or 'generator_ema' (official G, D, Gs).
    name: the network's official name ('G', 'D', 'Gs').
    settings: the build function's effective keyword arguments (source defaults updated by static_kwargs).
    variables: local variable name -> float32 numpy array in the official layout (NCHW-era shapes, HWIO
      conv kernels, [k, k, out, in] transposed-conv kernels, dense [in, out]); the scalar 'lod' excluded.
    lod: the official level-of-detail variable (0 = fully grown, log2(resolution) - 2 = 4x4 only).
    """

    role: str
    name: str
    settings: dict[str, Any]
    variables: dict[str, np.ndarray]
    lod: float


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The three networks of an official pickle."""

    generator: OfficialNetwork
    discriminator: OfficialNetwork
    generator_ema: OfficialNetwork


def load_snapshot(path: str) -> Snapshot:
    """Reads an official `(G, D, Gs)` pickle safely and checks its structure. Raises SnapshotError."""
    loaded = unpickler.read_network_pickle(path)
    if not (
        isinstance(loaded, tuple)
        and len(loaded) == 3
        and all(isinstance(item, unpickler.NetworkState) for item in loaded)
    ):
        raise SnapshotError(
            f"{path!r} holds {_describe(loaded)}, not the tuple (G, D, Gs) of tfutil.Network "
            f"objects that the official train.py writes (network-snapshot-*.pkl, karras2018iclr-*.pkl)"
        )
    return Snapshot(*(parse_network(item.state, role) for item, role in zip(loaded, ROLES)))


def _describe(obj: Any) -> str:
    if isinstance(obj, tuple):
        return f"a tuple of {len(obj)} ({', '.join(type(item).__name__ for item in obj[:4])})"
    return f"a {type(obj).__name__}"


def parse_network(state: Any, role: str) -> OfficialNetwork:
    """Validates one `tfutil.Network` state dict and resolves its settings. Raises SnapshotError."""
    if isinstance(state, dict) and "version" not in state and "build_func_spec" in state:
        raise SnapshotError(THEANO_PICKLE_MESSAGE)
    required = ("version", "name", "static_kwargs", "build_module_src", "build_func_name", "variables")
    if not isinstance(state, dict) or any(key not in state for key in required):
        raise SnapshotError(f"the {role} is not an official tfutil.Network state (expected the keys {required})")
    if not (isinstance(state["version"], int) and state["version"] == 2):
        raise SnapshotError(
            f"the {role} has tfutil.Network state version {_shown(state['version'])}; only "
            f"version 2 (the official TensorFlow code) is supported"
        )
    func = state["build_func_name"]
    expected = BUILD_FUNCTIONS["discriminator" if role == "discriminator" else "generator"]
    if not (isinstance(func, str) and func == expected):
        raise SnapshotError(
            f"the {role} was built by {_shown(func)}; only the paper's networks (G_paper, D_paper) "
            f"can be imported, and the {role} must be {expected}"
        )
    if not isinstance(state["name"], str):
        raise SnapshotError(f"the {role}'s name is {_describe(state['name'])}, not a string; damaged snapshot")
    source = state["build_module_src"]
    declared, defaults, function_node = _source_signature(source, func)
    _check_known_semantics(function_node, func)
    static = state["static_kwargs"]
    if not isinstance(static, dict):
        raise SnapshotError(f"the {role}'s static_kwargs is a {type(static).__name__}, not a dict")
    # The official build function ignores keyword arguments it does not declare (**kwargs).
    settings = {**defaults, **{k: _setting(v, role, k) for k, v in static.items() if k in declared}}
    variables, lod = _read_variables(state["variables"], role)
    return OfficialNetwork(role=role, name=state["name"], settings=settings, variables=variables, lod=lod)


def _setting(value: Any, role: str, key: str) -> Any:
    """A static_kwargs value as a plain Python scalar (numpy scalars, e.g. a resolution taken from an array
    shape, become Python numbers). Every G_paper/D_paper setting is None, a bool, a number or a string."""
    value = value.item() if isinstance(value, np.generic) else value
    if not _is_scalar(value):
        raise SnapshotError(
            f"the {role}'s setting {key} ({_describe(value)}) is not None, a bool, a 64-bit number "
            f"or a string; damaged snapshot"
        )
    return value


def _is_scalar(value: Any) -> bool:
    """None, a bool, a float, a string or an int of at most 64 bits."""
    return value is None or isinstance(value, (bool, float, str)) or isinstance(value, int) and abs(value) < 2**63


def _shown(value: Any) -> str:
    """A value from the file for a message: the repr of a scalar (cut short), else its type."""
    return one_line(repr(value), 60) if _is_scalar(value) else _describe(value)


def _source_signature(source: Any, func: str) -> tuple[set[str], dict[str, Any], ast.FunctionDef]:
    """`func` in the stored networks.py source: its parameter names, literal defaults and AST node.

    The source is at most MAX_SOURCE_CHARS long (its syntax tree takes ~100 times its size); the warnings
    of a damaged source (invalid escapes, ...) are not printed.
    """
    if isinstance(source, str) and len(source) > MAX_SOURCE_CHARS:
        raise SnapshotError(
            f"the pickle's stored network source (build_module_src) has {len(source)} characters; "
            f"the official networks.py has about 20,000: damaged snapshot"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        raise SnapshotError("the pickle's stored network source (build_module_src) cannot be parsed") from None
    node = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func), None)
    if node is None:
        raise SnapshotError(f"the pickle's stored network source does not define {func}")
    positional = node.args.posonlyargs + node.args.args
    declared = {arg.arg for arg in positional + node.args.kwonlyargs}
    pairs = list(zip(positional[len(positional) - len(node.args.defaults) :], node.args.defaults))
    pairs += [
        (arg, default) for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults) if default is not None
    ]
    defaults = {}
    for arg, default in pairs:
        try:
            defaults[arg.arg] = ast.literal_eval(default)
        except ValueError:
            continue  # a computed default; the settings pggan needs are literals in every official version
    return declared, defaults, node


def _check_known_semantics(node: ast.FunctionDef, func: str) -> None:
    """Refuses network sources whose math differs from the released code (the pre-release of Feb 2018)."""
    if func == "D_paper" and any(isinstance(n, ast.Name) and n.id == "downscale2d_stride" for n in ast.walk(node)):
        raise SnapshotError(
            "this discriminator comes from a pre-release of the official code (before April "
            "2018) that subsamples instead of averaging; such snapshots are not supported"
        )
    if func == "G_paper":
        gains = [
            ast.unparse(k.value)
            for n in ast.walk(node)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "dense"
            for k in n.keywords
            if k.arg == "gain"
        ]
        if not any(re.sub(r"\s", "", g) == "np.sqrt(2)/4" for g in gains):
            raise SnapshotError(
                "this generator comes from a pre-release of the official code (before April 2018) "
                "whose 4x4 dense layer has another gain; such snapshots are not supported"
            )


def _read_variables(pairs: Any, role: str) -> tuple[dict[str, np.ndarray], float]:
    if not isinstance(pairs, (list, tuple)):
        raise SnapshotError(f"the {role}'s variables are a {type(pairs).__name__}, not a list of (name, array)")
    variables: dict[str, np.ndarray] = {}
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)):
            raise SnapshotError(f"the {role}'s variable list holds {_describe(pair)}, not (name, array) pairs")
        name, value = pair
        if not isinstance(value, (np.ndarray, np.generic, float)) or np.asarray(value).dtype.kind != "f":
            kind = getattr(value, "dtype", type(value).__name__)
            raise SnapshotError(f"{role} variable {name!r} holds {kind} values, not a floating-point array")
        if name in variables:
            raise SnapshotError(f"{role} variable {name!r} appears twice")
        variables[name] = np.asarray(value, np.float32)
    if "lod" not in variables or variables["lod"].shape != ():
        raise SnapshotError(f"the {role} has no scalar 'lod' variable; not a G_paper/D_paper snapshot")
    lod = float(variables.pop("lod"))
    if not all(np.isfinite(v).all() for v in variables.values()):
        bad = next(k for k, v in variables.items() if not np.isfinite(v).all())
        raise SnapshotError(f"{role} variable {bad!r} holds NaN or infinite values; the snapshot is damaged")
    return variables, lod


# ----------------------------------------------------------------------------------------------
# Settings -> pggan ModelSpec

_SHARED = ("resolution", "num_channels", "label_size", "fmap_base", "fmap_decay", "fmap_max", "use_wscale")


def model_spec(snapshot: Snapshot) -> networks.ModelSpec:
    """The pggan ModelSpec equivalent to the snapshot's G_paper/D_paper settings.

    Raises SnapshotError naming the option when a setting has no pggan equivalent (ReLU generators,
    unknown structure or dtype) or when G, D and Gs disagree.
    """
    g, d, gs = snapshot.generator.settings, snapshot.discriminator.settings, snapshot.generator_ema.settings
    for key in sorted(set(g) | set(gs)):
        if g.get(key) != gs.get(key):
            raise SnapshotError(
                f"G and Gs disagree on {key} ({_shown(g.get(key))} vs {_shown(gs.get(key))}); damaged snapshot"
            )
    for key in _SHARED:
        if g.get(key) != d.get(key):
            raise SnapshotError(
                f"G and D disagree on {key} ({_shown(g.get(key))} vs {_shown(d.get(key))}); damaged snapshot"
            )
    for net, settings in (("G", g), ("D", d)):
        _require(settings, net, "structure", SUPPORTED_STRUCTURES)
        _require(settings, net, "dtype", SUPPORTED_DTYPES)
    if not g.get("use_leakyrelu", True):
        raise SnapshotError("the generator uses use_leakyrelu=False (ReLU); pggan networks use leaky ReLU only")
    try:
        resolution = int(g["resolution"])
        fmap_base, fmap_decay, fmap_max = int(g["fmap_base"]), float(g["fmap_decay"]), int(g["fmap_max"])
        latent_size = g.get("latent_size")
        if latent_size is None:  # official default: nf(0)
            latent_size = min(fmap_base, fmap_max)
        return networks.ModelSpec(
            resolution=resolution,
            num_channels=int(g["num_channels"]),
            latent_size=int(latent_size),
            label_size=int(g["label_size"]),
            fmap_base=fmap_base,
            fmap_decay=fmap_decay,
            fmap_max=fmap_max,
            normalize_latents=bool(g["normalize_latents"]),
            use_pixelnorm=bool(g["use_pixelnorm"]),
            use_wscale=bool(g["use_wscale"]),
            pixelnorm_epsilon=float(g["pixelnorm_epsilon"]),
            mbstd_group_size=int(d["mbstd_group_size"]),
            d_downsample_order="conv_pool_act" if d.get("fused_scale", True) else "conv_act_pool",
        )
    except KeyError as error:
        raise SnapshotError(
            f"the stored network source gives no value for {error.args[0]!r}; not an official G_paper/D_paper"
        ) from None
    except (TypeError, ValueError, OverflowError) as error:
        raise SnapshotError(f"the snapshot's settings are not supported by pggan: {one_line(str(error))}") from None


def _require(settings: dict, net: str, key: str, allowed: tuple) -> None:
    """`settings[key]` (absent: the first allowed value, the official default) must be in `allowed`."""
    value = settings.get(key, allowed[0])
    if value not in allowed:
        raise SnapshotError(f"{net} has {key}={_shown(value)}; supported values: {allowed}")


def fade_state(spec: networks.ModelSpec, lod: float) -> tuple[int, float]:
    """(active resolution, alpha) for an official lod: resolution 2**(log2 R - floor(lod)), alpha 1 - frac(lod)."""
    max_lod = spec.num_levels - 1
    if not 0.0 <= lod <= max_lod:
        raise SnapshotError(f"the snapshot's lod {lod} is outside [0, {max_lod}] for resolution {spec.resolution}")
    whole = math.floor(lod)
    return spec.resolution >> whole, 1.0 - (lod - whole)
