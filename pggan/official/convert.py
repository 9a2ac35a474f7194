"""Official G_paper / D_paper variables -> pggan Generator / Discriminator parameter trees.

pggan's abstract networks (built from the ModelSpec) define the target tree; every target leaf is
filled from one official variable, whose shape is checked, and every official variable must be used.

Layout facts (official `networks.py`; TensorFlow stores conv kernels HWIO in both data formats):
- 3x3 and 1x1 convolutions: HWIO [k, k, in, out] in both, copied as is.
- G's fused `Conv0_up` is a stride-2 transposed convolution whose [3, 3, out, in] kernel w is padded and
  summed into 4x4 taps. That equals nearest 2x upsampling followed by a 3x3 convolution with the
  kernel `w[::-1, ::-1].transpose(0, 1, 3, 2)` (spatially flipped, in/out swapped), pggan's form.
- D's fused `Conv1_down` (stride-2 convolution with the padded, summed, quartered kernel) equals
  3x3 convolution then 2x2 average pooling with the same HWIO kernel: copied as is.
- G's 4x4 dense layer [latent + labels, 16 C] is reshaped to NCHW [N, C, 4, 4]; pggan reshapes to NHWC
  [N, 4, 4, C]: the columns are permuted from (c, h, w) to (h, w, c) order. Both then add the same
  per-channel bias [C], copied as is.
- D's Dense0 flattens NCHW features (rows in (c, h, w) order); pggan flattens NHWC: rows permuted.
- Equalized-learning-rate scaling is the same (`gain / sqrt(fan_in)`, fan_in = k*k*in for every conv,
  the fused ones included), so weights need no rescaling.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from pggan.model import networks
from pggan.official.errors import SnapshotError
from pggan.official.snapshot import OfficialNetwork

_SUFFIX = {"kernel": "weight", "bias": "bias"}


def _copy(w: np.ndarray) -> np.ndarray:
    return w


def _transposed_conv_to_upsample_conv(w: np.ndarray) -> np.ndarray:
    """Official fused-upsample kernel [k, k, out, in] -> HWIO kernel applied after nearest upsampling."""
    return w[::-1, ::-1].transpose(0, 1, 3, 2)


def _dense_nchw_columns_to_nhwc(w: np.ndarray) -> np.ndarray:
    """[in, C*4*4] with (c, h, w) column order -> (h, w, c) column order."""
    return w.reshape(w.shape[0], -1, 4, 4).transpose(0, 2, 3, 1).reshape(w.shape)


def _dense_nchw_rows_to_nhwc(w: np.ndarray) -> np.ndarray:
    """[C*4*4, out] with (c, h, w) row order -> (h, w, c) row order."""
    return w.reshape(-1, 4, 4, w.shape[1]).transpose(1, 2, 0, 3).reshape(w.shape)


# kind -> (official shape from pggan's target shape, converter)
_RULES: dict[str, tuple[Callable[[tuple], tuple], Callable[[np.ndarray], np.ndarray]]] = {
    "same": (lambda s: s, _copy),
    "transposed_conv": (lambda s: (s[0], s[1], s[3], s[2]), _transposed_conv_to_upsample_conv),
    "dense_nchw_out": (lambda s: s, _dense_nchw_columns_to_nhwc),
    "dense_nchw_in": (lambda s: s, _dense_nchw_rows_to_nhwc),
}


def generator_parameters(net: OfficialNetwork, spec: networks.ModelSpec) -> dict:
    """pggan Generator parameters (pure nested dict of float32 numpy arrays) from an official G_paper/Gs."""
    log2_res = spec.num_levels + 1
    fused = bool(net.settings.get("fused_scale", True))  # absent: the official default

    def locate(path: tuple) -> tuple[str, str]:
        leaf = path[-1]
        if path[0] == "to_rgb":
            return f"ToRGB_lod{log2_res - (path[1] + 2)}/{_SUFFIX[leaf]}", "same"
        level, layer = path[1], path[2]
        if level == 0:
            if layer == "dense":
                return f"4x4/Dense/{_SUFFIX[leaf]}", "dense_nchw_out" if leaf == "kernel" else "same"
            return f"4x4/Conv/{_SUFFIX[leaf]}", "same"
        scope = f"{4 << level}x{4 << level}"
        if layer == "conv0" and fused:
            return f"{scope}/Conv0_up/{_SUFFIX[leaf]}", "transposed_conv" if leaf == "kernel" else "same"
        return f"{scope}/{layer.capitalize()}/{_SUFFIX[leaf]}", "same"

    return _convert(net, networks.parameters(networks.abstract_generator(spec)), locate)


def discriminator_parameters(net: OfficialNetwork, spec: networks.ModelSpec) -> dict:
    """pggan Discriminator parameters (pure nested dict of float32 numpy arrays) from an official D_paper."""
    log2_res = spec.num_levels + 1
    fused = bool(net.settings.get("fused_scale", True))  # absent: the official default

    def locate(path: tuple) -> tuple[str, str]:
        leaf = path[-1]
        if path[0] == "from_rgb":
            return f"FromRGB_lod{log2_res - (path[1] + 2)}/{_SUFFIX[leaf]}", "same"
        level, layer = path[1], path[2]
        if level == 0:
            kind = "dense_nchw_in" if (layer, leaf) == ("dense0", "kernel") else "same"
            return f"4x4/{layer.capitalize()}/{_SUFFIX[leaf]}", kind
        scope = f"{4 << level}x{4 << level}"
        name = "Conv1_down" if layer == "conv1" and fused else layer.capitalize()
        return f"{scope}/{name}/{_SUFFIX[leaf]}", "same"

    return _convert(net, networks.parameters(networks.abstract_discriminator(spec)), locate)


def _convert(net: OfficialNetwork, target: dict, locate: Callable[[tuple], tuple[str, str]]) -> dict:
    """Fills every leaf of `target` (ShapeDtypeStructs) from `net.variables`; checks shapes and coverage."""
    used: set[str] = set()

    def fill(path, leaf: jax.ShapeDtypeStruct) -> np.ndarray:
        keys = tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path)
        name, kind = locate(keys)
        official_shape, convert = _RULES[kind]
        expected = tuple(official_shape(tuple(leaf.shape)))
        if name not in net.variables:
            raise SnapshotError(
                f"{net.name} lacks the variable {name!r} that its settings ({_describe_settings(net)}) "
                f"require; the snapshot does not match its own settings"
            )
        value = net.variables[name]
        if value.shape != expected:
            raise SnapshotError(
                f"{net.name} variable {name!r} has shape {value.shape}, but the settings "
                f"({_describe_settings(net)}) need {expected}"
            )
        used.add(name)
        return np.ascontiguousarray(convert(value), dtype=np.float32)

    params = jax.tree_util.tree_map_with_path(fill, target)
    unused = sorted(set(net.variables) - used)
    if unused:
        raise SnapshotError(
            f"{net.name} has variables that its settings ({_describe_settings(net)}) do not create "
            f"({', '.join(unused[:4])}{', ...' if len(unused) > 4 else ''}); unsupported architecture"
        )
    return params


def _describe_settings(net: OfficialNetwork) -> str:
    s = net.settings
    return (
        f"{s.get('resolution')}x{s.get('resolution')}, fmap_base={s.get('fmap_base')}, "
        f"fmap_max={s.get('fmap_max')}, fused_scale={s.get('fused_scale')}"
    )
