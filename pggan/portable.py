"""The portable export of trained networks: one `.pggan` file (a zip archive) readable without the run.

Layout of the zip (entries stored uncompressed: float arrays barely compress, and it rules out zip bombs):
  spec.json                          {"format": "pggan-export", "version": 1, "model": ModelSpec fields,
                                      "resolution", "alpha": the stage to sample at, "networks": [names],
                                      "source": {"step", "kimg", "path"}, "stablehlo": bool}
  <network>/<parameter path>.npy     float32 little-endian arrays (NumPy .npy v1/v2, no pickle), one per
                                      parameter, e.g. generator_ema/blocks/0/dense/weight.npy
  generator_ema.stablehlo            optional: `jax.export` serialization of the EMA generator's function
                                      latents float32 [N, latent_size] (and labels [N, label_size]) ->
                                      images float32 [N, R, R, C] in [-1, 1], N symbolic; servable without pggan.
`generator_ema` is always present; `generator` (the raw G) and `discriminator` are added for fine-tuning.

Reading trusts nothing in the file: every entry name must be one the spec implies, every entry must be
stored (no compression) with the size its shape implies, and every .npy header must declare exactly the
expected dtype and shape before an array is built. Any deviation is an ExportError in one line.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from typing import Any

import jax
import numpy as np

from pggan.errors import UserError
from pggan.model import networks

FORMAT, VERSION = "pggan-export", 1
SPEC_ENTRY, STABLEHLO_ENTRY = "spec.json", "generator_ema.stablehlo"
NETWORK_NAMES = ("generator_ema", "generator", "discriminator")
EXTENSION = ".pggan"
_MAX_SPEC_BYTES = 1 << 16
_MAX_NPY_HEADER = 4096
_DTYPE = np.dtype("<f4")


class ExportError(UserError):
    """A file that is not a readable pggan export; the message says what is wrong."""


class MissingNetworksError(ExportError):
    """An intact export that lacks networks asked for (exported without --training_networks)."""


@dataclasses.dataclass(frozen=True)
class Exported:
    """The content of an export: the model, the stage it samples at, parameter trees per network name."""

    spec: networks.ModelSpec
    resolution: int
    alpha: float
    parameters: dict[str, dict]
    source: dict


def _abstract(spec: networks.ModelSpec, name: str) -> dict:
    module = networks.abstract_discriminator(spec) if name == "discriminator" else networks.abstract_generator(spec)
    return networks.parameters(module)


def _leaf_name(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array, _DTYPE), allow_pickle=False)
    return buffer.getvalue()


def write(
    path: str,
    spec: networks.ModelSpec,
    parameters: dict[str, dict],
    *,
    resolution: int,
    alpha: float,
    source: dict,
    stablehlo: bytes | None = None,
) -> None:
    """Writes an export (see the module docstring); written to a temporary name and renamed when complete.

    parameters: {network name: pure parameter tree} with at least 'generator_ema'.
    stablehlo: `jax.export` serialization of the EMA generator (`export_function`), or None.
    """
    if "generator_ema" not in parameters or set(parameters) - set(NETWORK_NAMES):
        raise ExportError(
            f"an export holds generator_ema and optionally generator, discriminator; got {sorted(parameters)}"
        )
    names = [name for name in NETWORK_NAMES if name in parameters]
    spec_json = {
        "format": FORMAT,
        "version": VERSION,
        "model": dataclasses.asdict(spec),
        "resolution": resolution,
        "alpha": float(alpha),
        "networks": names,
        "source": source,
        "stablehlo": stablehlo is not None,
    }
    temporary = f"{path}.tmp{os.getpid()}"
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(SPEC_ENTRY, json.dumps(spec_json, indent=1, sort_keys=True))
        for name in names:
            for leaf_path, leaf in jax.tree_util.tree_flatten_with_path(parameters[name])[0]:
                archive.writestr(f"{name}/{_leaf_name(leaf_path)}.npy", _npy_bytes(np.asarray(leaf)))
        if stablehlo is not None:
            archive.writestr(STABLEHLO_ENTRY, stablehlo)
    os.replace(temporary, path)


def _fail(path: str, what: str) -> ExportError:
    return ExportError(
        f"{path} is not a usable pggan export: {what}; export it again with pggan-export (tools/export.py)"
    )


def _read_spec(path: str, archive: zipfile.ZipFile) -> dict:
    try:
        info = archive.getinfo(SPEC_ENTRY)
    except KeyError:
        raise _fail(path, f"it has no {SPEC_ENTRY}") from None
    if info.file_size > _MAX_SPEC_BYTES:
        raise _fail(path, f"its {SPEC_ENTRY} has {info.file_size} bytes (at most {_MAX_SPEC_BYTES})")
    try:
        spec = json.loads(archive.read(info)[: _MAX_SPEC_BYTES + 1])
    except (ValueError, zipfile.BadZipFile, NotImplementedError) as e:
        raise _fail(path, f"its {SPEC_ENTRY} does not parse ({e})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise _fail(path, f"its {SPEC_ENTRY} is not of the {FORMAT} format")
    if spec.get("version") != VERSION:
        raise _fail(path, f"format version {spec.get('version')!r}; this pggan reads version {VERSION}")
    return spec


def _read_array(path: str, archive: zipfile.ZipFile, entry: str, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 array of `entry`, checked against `shape` before any array is built."""
    data_bytes = int(np.prod(shape, dtype=np.int64)) * _DTYPE.itemsize
    try:
        info = archive.getinfo(entry)
    except KeyError:
        raise _fail(path, f"it lacks {entry}") from None
    if info.compress_type != zipfile.ZIP_STORED or not data_bytes < info.file_size <= data_bytes + _MAX_NPY_HEADER:
        raise _fail(
            path,
            f"{entry} has {info.file_size} bytes, compression {info.compress_type}; a stored "
            f"float32 array of shape {shape} is expected",
        )
    with archive.open(info) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read_header:
                raise ValueError(f"npy version {version}")
            stored_shape, fortran, dtype = read_header[version](stream, max_header_size=_MAX_NPY_HEADER)
        except (ValueError, SyntaxError, TypeError) as e:
            raise _fail(path, f"{entry} is not a valid .npy array ({e})") from None
        if dtype != _DTYPE or fortran or tuple(stored_shape) != shape:
            raise _fail(
                path,
                f"{entry} holds {dtype} {tuple(stored_shape)}{' (Fortran order)' if fortran else ''}, "
                f"expected float32 {shape}",
            )
        data = stream.read(data_bytes + 1)
    if len(data) != data_bytes:
        raise _fail(path, f"{entry} has {len(data)} data bytes, expected {data_bytes}")
    return np.frombuffer(data, _DTYPE).reshape(shape)


def read(path: str, names: tuple[str, ...] = ("generator_ema",)) -> Exported:
    """Reads the networks `names` of an export (see the module docstring for what is checked).

    Raises ExportError (one line) for anything that is not a complete, consistent export, and when a
    network asked for was not exported.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ExportError(
            f"{path} is not a pggan export (not a readable zip file: {e}); pass a file written by "
            "pggan-export (tools/export.py), a run's workdir or an official .pkl"
        ) from None
    with archive:
        spec_json = _read_spec(path, archive)
        try:
            spec = networks.ModelSpec.from_config(spec_json["model"])
            resolution, alpha = int(spec_json["resolution"]), float(spec_json["alpha"])
            networks.level_of(resolution, spec)
            exported = list(spec_json["networks"])
        except (KeyError, TypeError, ValueError) as e:
            raise _fail(path, f"its {SPEC_ENTRY} describes no valid model ({e})") from None
        if not 0.0 <= alpha <= 1.0 or "generator_ema" not in exported or set(exported) - set(NETWORK_NAMES):
            raise _fail(path, f"its {SPEC_ENTRY} has alpha {alpha} and networks {exported}")
        expected = {SPEC_ENTRY} | ({STABLEHLO_ENTRY} if spec_json.get("stablehlo") else set())
        trees = {name: _abstract(spec, name) for name in exported}
        for name, tree in trees.items():
            expected |= {f"{name}/{_leaf_name(p)}.npy" for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}
        entries = archive.namelist()
        if len(entries) != len(set(entries)) or set(entries) != expected:
            extra = sorted(set(entries) - expected)[:3]
            missing = sorted(expected - set(entries))[:3]
            raise _fail(
                path,
                f"its entries do not match its spec (unexpected {extra}, missing {missing}, "
                f"{len(entries) - len(set(entries))} duplicated)",
            )
        if missing := [name for name in names if name not in exported]:
            raise MissingNetworksError(
                f"{path} holds no {' or '.join(missing)} (it has {', '.join(exported)}); export the "
                "run again with --training_networks to include them"
            )
        parameters = {
            name: jax.tree_util.tree_map_with_path(
                lambda p, leaf, name=name: _read_array(path, archive, f"{name}/{_leaf_name(p)}.npy", tuple(leaf.shape)),
                trees[name],
            )
            for name in names
        }
    source = spec_json.get("source") if isinstance(spec_json.get("source"), dict) else {}
    return Exported(spec=spec, resolution=resolution, alpha=alpha, parameters=parameters, source=source)


def read_stablehlo(path: str) -> bytes:
    """The serialized `jax.export` generator function of an export (see `export_function`)."""
    with zipfile.ZipFile(path) as archive:
        if not _read_spec(path, archive).get("stablehlo") or STABLEHLO_ENTRY not in archive.namelist():
            raise ExportError(f"{path} holds no StableHLO generator; export it again with --stablehlo")
        return archive.read(STABLEHLO_ENTRY)


def export_function(generator: networks.Generator, resolution: int, alpha: float) -> bytes:
    """`jax.export` of the generator at one stage, batch size symbolic: serialized StableHLO bytes.

    The function takes latents float32 [N, latent_size] (and, for a conditional model, one-hot labels
    float32 [N, label_size]) and returns images float32 [N, R, R, C] in about [-1, 1]. Load it with
    `jax.export.deserialize(data).call(...)`; no pggan code is needed.
    """
    from flax import nnx

    spec = generator.spec
    graphdef, state = nnx.split(generator)
    (batch,) = jax.export.symbolic_shape("n")
    args = [jax.ShapeDtypeStruct((batch, spec.latent_size), np.float32)]
    if spec.label_size:
        args.append(jax.ShapeDtypeStruct((batch, spec.label_size), np.float32))

    def generate(latents: Any, labels: Any = None) -> Any:
        return nnx.merge(graphdef, state)(latents, labels, resolution=resolution, alpha=alpha)

    return bytes(jax.export.export(jax.jit(generate))(*args).serialize())
