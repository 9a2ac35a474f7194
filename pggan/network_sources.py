"""Trained networks from wherever they are: a run's workdir, its checkpoints, an export, an official pickle.

`load(path, items)` recognises
  a run's workdir (it has checkpoints/)            the chosen checkpoint (default: the latest intact one),
  WORKDIR/checkpoints or WORKDIR/checkpoints/<n>   the same, or exactly checkpoint n,
  a `.pggan` export (`pggan.portable`)             what it holds,
  an official (G, D, Gs) pickle (`.pkl`)            converted in memory (`pggan.official`),
and returns the parameter trees asked for with the model and the stage (resolution, fade-in) to sample
them at. Everything that cannot be read is a NetworkSourceError (or the reader's own UserError) in one line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from pggan import checkpoint, portable
from pggan.errors import UserError
from pggan.model import networks
from pggan.official import convert, snapshot

ITEMS = ("generator_ema", "generator", "discriminator")


class NetworkSourceError(UserError):
    """A path that holds no trained networks pggan can read; the message says what to pass instead."""


@dataclasses.dataclass(frozen=True)
class Networks:
    """Trained parameters and where they stand.

    spec: the model. resolution, alpha: the stage they were trained at (what they sample at).
    parameters: {item: pure parameter tree (float32 arrays)} for the items asked for.
    meta: 'step' (images shown), 'kind' ('checkpoint', 'export' or 'official') and, for a checkpoint,
    its metadata ('config', 'nimg', ...).
    """

    spec: networks.ModelSpec
    resolution: int
    alpha: float
    parameters: dict[str, dict]
    meta: dict

    def generator(self, item: str = "generator_ema") -> networks.Generator:
        """The Generator of one of the items (on the default device)."""
        return networks.merge_parameters(networks.abstract_generator(self.spec), self.parameters[item])

    def discriminator(self) -> networks.Discriminator:
        """The Discriminator (on the default device); needs the 'discriminator' item."""
        return networks.merge_parameters(networks.abstract_discriminator(self.spec), self.parameters["discriminator"])


USAGE = (
    f"pass a run's workdir, its checkpoints folder, a {portable.EXTENSION} file written by pggan-export or an "
    "official .pkl"
)


def checkpoint_location(path: str) -> tuple[str, int | None] | None:
    """(workdir, exact step or None) when `path` is a workdir, its checkpoints/ or one checkpoint in it."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return path, None
    if os.path.basename(path) == "checkpoints":
        return os.path.dirname(path), None
    parent = os.path.dirname(path)
    if os.path.basename(path).isdigit() and os.path.basename(parent) == "checkpoints":
        return os.path.dirname(parent), int(os.path.basename(path))
    return None


def load(
    path: str, items: Sequence[str] = ("generator_ema",), *, step: int | None = None, resolution: int | None = None
) -> Networks:
    """The networks `items` (of ITEMS) stored at `path` (see the module docstring).

    step, resolution: for a run, the exact checkpoint or the last one of a resolution stage (the
    checkpoint's files are checked against its checksums; see `checkpoint.CheckpointReader.select`).
    They are refused for exports and pickles, which hold one state.
    """
    items = tuple(items)
    if unknown := set(items) - set(ITEMS):
        raise NetworkSourceError(f"unknown network items {sorted(unknown)}; choose from {ITEMS}")
    if not os.path.exists(os.path.expanduser(path)):
        raise NetworkSourceError(f"no such file or folder: {path}; {USAGE}")
    if location := checkpoint_location(path):
        return _from_run(*location, items, step, resolution)
    if step is not None or resolution is not None:
        raise NetworkSourceError(
            f"{path} holds one network state: a step or resolution applies only to a run's workdir"
        )
    if os.path.isdir(path):
        raise NetworkSourceError(
            f"no checkpoints in {path!r}: train first (pggan-train --config=... --workdir={path}) or {USAGE}"
        )
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(b"PK"):
        return _from_export(path, items)
    if magic[:1] == b"\x80" or path.endswith(".pkl"):
        return _from_official(path, items)
    raise NetworkSourceError(f"{path} is not a pggan export (neither a zip archive nor a pickle); {USAGE}")


def _from_run(
    workdir: str, exact: int | None, items: tuple[str, ...], step: int | None, resolution: int | None
) -> Networks:
    if exact is not None and step is not None and step != exact:
        raise NetworkSourceError(f"the path names checkpoint {exact} but step {step} was asked for; give one")
    with checkpoint.CheckpointReader(workdir) as reader:
        network = "raw" if items[:1] == ("generator",) else "ema"  # select() checks this generator's files
        chosen = reader.select(exact if exact is not None else step, resolution, network)
        spec, parameters, meta = reader.parameters(chosen, items)
    return Networks(
        spec=spec,
        resolution=meta["resolution"],
        alpha=meta["alpha"],
        parameters=parameters,
        meta={**meta, "kind": "checkpoint"},
    )


def _from_export(path: str, items: tuple[str, ...]) -> Networks:
    exported = portable.read(path, items)
    step = exported.source.get("step", 0)
    return Networks(
        spec=exported.spec,
        resolution=exported.resolution,
        alpha=exported.alpha,
        parameters=exported.parameters,
        meta={"step": step if isinstance(step, int) else 0, "kind": "export", "source": exported.source},
    )


def _from_official(path: str, items: tuple[str, ...]) -> Networks:
    """An official pickle converted in memory: G -> generator, D -> discriminator, Gs -> generator_ema."""
    loaded = snapshot.load_snapshot(path)
    spec = snapshot.model_spec(loaded)
    resolution, alpha = snapshot.fade_state(spec, loaded.generator_ema.lod)
    converters = {
        "generator_ema": lambda: convert.generator_parameters(loaded.generator_ema, spec),
        "generator": lambda: convert.generator_parameters(loaded.generator, spec),
        "discriminator": lambda: convert.discriminator_parameters(loaded.discriminator, spec),
    }
    return Networks(
        spec=spec,
        resolution=resolution,
        alpha=alpha,
        parameters={item: converters[item]() for item in items},
        meta={"step": 0, "kind": "official", "lod": loaded.generator_ema.lod},
    )
