"""Orbax checkpoints of a training run: save, keep policy, restore on any device count, load G for tools.

Layout: `WORKDIR/checkpoints/<nimg>/` (the step number is the number of real images shown), with
items
  generator, discriminator, generator_ema: parameter trees (pure nested dicts, float32),
  optimizers: {'g', 'd'} optimizer states,   counters: int32 scalars,
  spectral_u: only in runs with spectral normalization of D, its power-iteration vectors,
  augment: only in runs with adaptive augmentation, its probability and running sums,
  meta: JSON {'nimg', 'round', 'phase' (the last round's schedule values), 'resolution', 'alpha',
    'stage_final', 'config' (the run's config as JSON), 'data_position', ...}.
  checksums.json: the size and SHA-256 of every other file of the checkpoint (`pggan.checksums`).
Orbax writes each checkpoint to a temporary directory and renames it when complete, so a run killed
mid-write never leaves a checkpoint that loads; the checksum manifest is written just before the
rename (`_ChecksummedStep`), and every read checks the files it needs against it first. A checkpoint
whose files fail their checksums (or whose manifest is missing) is damaged: the trainer moves it to
`checkpoints/damaged/` and resumes from the newest one that verifies; the readers for tools skip it
(never moving anything: a run may be using the workdir), or refuse it in one line when it is the
one asked for. Checkpoints written before checksums existed (no manifest, and no 'checksums' mark in
their step metadata) are read unverified, with a warning; if one fails to load it counts as damaged.
The newest few checkpoints are kept, plus, for good, the last checkpoint of every resolution stage
(marked `stage_final` in its step metadata).
No pickle is involved anywhere: arrays are stored by tensorstore, metadata as JSON.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers

from pggan import checksums
from pggan.data import diff_augment
from pggan.errors import UserError
from pggan.model import networks, normalization

STATE_ITEMS = ("generator", "discriminator", "generator_ema", "optimizers", "counters")
# Items only some runs' states hold (saved and restored when present): SN's power-iteration vectors.
OPTIONAL_STATE_ITEMS = (normalization.STATE_ITEM, diff_augment.STATE_ITEM)
NETWORK_ITEMS = {"ema": "generator_ema", "raw": "generator"}
PARAMETER_ITEMS = ("generator", "discriminator", "generator_ema")
# Step metadata mark of checkpoints that get a checksum manifest; one without the mark and without a
# manifest was written before checksums existed.
CHECKSUMS_KEY = "checksums"


class CheckpointError(UserError):
    """A checkpoint is missing or unusable; the message says what to do."""


class CheckpointDamaged(CheckpointError):
    """A checkpoint whose files fail their checksums, or that fails to load; the message names it."""

    def __init__(self, step_dir: str, reason: str):
        self.step_dir, self.reason = step_dir, reason
        super().__init__(f"checkpoint {os.path.basename(step_dir)} in {os.path.dirname(step_dir)} is damaged: {reason}")


class _ChecksummedStep(ocp.path.atomicity.AtomicRenameTemporaryPath):
    """Orbax's atomic rename of a complete checkpoint directory, with its checksum manifest.

    Orbax finalizes the step directory and each item directory inside it with this class, on the
    primary process only, after every process has written its files (for async saves, in Orbax's
    background thread; the other processes wait for it). For a step directory (named by its step
    number) the files of its items are listed before the rename, so that a checkpoint never appears
    without its manifest; the step's own files, which Orbax updates while renaming
    (_CHECKPOINT_METADATA, commit_success.txt), are added right after it.
    """

    async def finalize(self) -> None:
        is_step = os.path.basename(str(self.get_final())).isdigit()
        if is_step:
            await asyncio.to_thread(checksums.write_manifest, str(self.get()), nested_only=True)
        await super().finalize()
        if is_step:
            await asyncio.to_thread(checksums.write_manifest, str(self.get_final()))


def _item_handlers() -> dict:
    """A handler for every item, so that reading a step's metadata does not log a warning per item."""
    handlers = {name: ocp.StandardCheckpointHandler() for name in (*STATE_ITEMS, *OPTIONAL_STATE_ITEMS)}
    handlers["meta"] = ocp.JsonCheckpointHandler()
    return handlers


def _items_of(state: dict) -> list[str]:
    """The checkpoint items of a state: every STATE_ITEMS entry and the optional ones it holds."""
    return [*STATE_ITEMS, *(name for name in OPTIONAL_STATE_ITEMS if name in state)]


# What Orbax 0.12 writes per checkpoint, measured on the tiny recipe (tests/test_full_disk.py checks
# the estimate against a real checkpoint): besides the array data, about 700 bytes of metadata per
# array (_METADATA, _sharding, array_metadatas/) and, per item, 11 small files (OCDBT manifests and
# B-tree nodes, commit markers) in 5 directories; the step itself has about 10 more blocks
# (_CHECKPOINT_METADATA, commit_success.txt, checksums.json, the meta item).
_ARRAY_METADATA_BYTES = 768
_ITEM_SMALL_FILES, _ITEM_DIRECTORIES, _STEP_BLOCKS = 11, 5, 10


def disk_bytes(abstract_state: dict, block_size: int) -> int:
    """About the disk space one checkpoint of a state takes on a filesystem with this block size.

    An estimate from above: arrays are counted uncompressed (Orbax compresses them with zstd) and
    every directory as a block (tmpfs allocates none). abstract_state: arrays or ShapeDtypeStructs.
    """
    blocks = _STEP_BLOCKS
    for name in _items_of(abstract_state):
        leaves = jax.tree.leaves(abstract_state[name])
        content = sum(leaf.size * leaf.dtype.itemsize for leaf in leaves) + _ARRAY_METADATA_BYTES * len(leaves)
        blocks += -(-content // block_size) + _ITEM_SMALL_FILES + _ITEM_DIRECTORIES
    return blocks * block_size


def _manager(directory: str, options: ocp.CheckpointManagerOptions | None = None) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(directory, options=options, item_handlers=_item_handlers())


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(os.path.expanduser(workdir)), "checkpoints")


# Orbax's metadata file of a step: JSON with the custom metadata pggan writes ("stage_final", ...).
STEP_METADATA_FILE = "_CHECKPOINT_METADATA"


def _step_dir(manager: ocp.CheckpointManager, step: int) -> str:
    return os.path.join(str(manager.directory), str(step))


def _verify(manager: ocp.CheckpointManager, step: int, items: Iterable[str] | None = None) -> bool:
    """Checks the files of `items` (all if None) and the step's own files against the step's manifest.

    Returns True when they match; False for a checkpoint written before checksums existed (nothing to
    check; a warning says so). Raises CheckpointDamaged naming the first file that differs.
    """
    step_dir = _step_dir(manager, step)
    try:
        files = checksums.read_manifest(step_dir)
    except ValueError as e:
        raise CheckpointDamaged(step_dir, str(e)) from None
    if files is None:
        if manager.metadata(step).custom_metadata.get(CHECKSUMS_KEY):
            raise CheckpointDamaged(step_dir, f"its checksum manifest {checksums.MANIFEST} is missing")
        logging.warning("Checkpoint %s predates checksums: reading it unverified.", step_dir)
        return False
    if damage := checksums.find_damage(step_dir, files, items):
        raise CheckpointDamaged(step_dir, damage)
    return True


def _read(manager: ocp.CheckpointManager, step: int, verified: bool, read: Callable[[], Any]) -> Any:
    """read() of a checked checkpoint; for an unverified one, a read error becomes CheckpointDamaged.

    Orbax raises a bare Exception for unreadable arrays. Device errors (RuntimeError: out of memory)
    say nothing about the files and propagate.
    """
    if verified:
        return read()
    try:
        return read()
    except RuntimeError:
        raise
    except Exception as e:
        reason = textwrap.shorten(str(e), 120, placeholder=" ...") or type(e).__name__
        raise CheckpointDamaged(_step_dir(manager, step), f"it does not load ({reason})") from None


@dataclasses.dataclass
class _KeepStageFinal:
    """Preservation policy: keep every checkpoint whose step is in the (growing) set of stage ends."""

    steps: set[int]

    def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> list[bool]:
        del context
        return [c.step in self.steps for c in checkpoints]


class CheckpointStore:
    """The training run's checkpoint manager (async saves, keep policy)."""

    def __init__(self, workdir: str, *, keep: int = 3, async_save: bool = True):
        self.directory = checkpoint_dir(workdir)
        self._stage_final = _KeepStageFinal(set())
        policy = checkpoint_managers.AnyPreservationPolicy([checkpoint_managers.LatestN(keep), self._stage_final])
        # cleanup_tmp_directories: a run killed mid-write leaves a `<step>.orbax-checkpoint-tmp-*`
        # directory; it is never loaded, and is deleted when the run restarts.
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            create=True,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            temporary_path_class=_ChecksummedStep,
        )
        self.manager = _manager(self.directory, options)
        self._stage_final.steps.update(step for step in self.manager.all_steps() if self._marked_stage_final(step))

    def _marked_stage_final(self, step: int) -> bool:
        """Whether the step's own metadata file marks it stage-final. Read directly (Orbax's `metadata()` also
        reads every item's metadata files): a damaged checkpoint must not stop the store from opening; it is
        found and set aside when read (`restore_newest`)."""
        try:
            with open(os.path.join(_step_dir(self.manager, step), STEP_METADATA_FILE)) as f:
                return bool(json.load(f).get("custom_metadata", {}).get("stage_final"))
        except (OSError, ValueError, AttributeError):
            return False

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def stage_final_steps(self) -> list[int]:
        return sorted(self._stage_final.steps & set(self.manager.all_steps()))

    def save(self, step: int, state: dict, meta: dict, *, stage_final: bool = False) -> None:
        """Starts an (async) save of `state` and JSON `meta` at `step`; a stage-final one is kept for good."""
        if stage_final:
            self._stage_final.steps.add(step)
        items = {name: ocp.args.StandardSave(state[name]) for name in _items_of(state)}
        items["meta"] = ocp.args.JsonSave({**meta, "stage_final": stage_final})
        self.manager.save(
            step,
            args=ocp.args.Composite(**items),
            force=True,
            custom_metadata={
                "stage_final": stage_final,
                "resolution": meta.get("resolution"),
                CHECKSUMS_KEY: checksums.MANIFEST,
            },
        )

    def meta(self, step: int) -> dict:
        """The JSON metadata of the checkpoint at `step` (no arrays are read), unchecked."""
        return _restore_meta(self.manager, step)

    def restore(self, step: int, abstract_state: dict) -> tuple[dict, dict]:
        """Restores (state, meta) at `step` onto the shardings of `abstract_state` (any device count), unchecked."""
        names = _items_of(abstract_state)
        items = {name: ocp.args.StandardRestore(abstract_state[name]) for name in names}
        items["meta"] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return {name: restored[name] for name in names}, dict(restored["meta"])

    def restore_newest(self, abstract_state: dict, check_meta: Callable[[dict], None]) -> tuple[int, dict, dict] | None:
        """(step, state, meta) of the newest checkpoint that verifies and loads; None in a new run.

        A damaged checkpoint is reported in one warning line and moved to checkpoints/damaged/ (by
        process 0), and the next older one is tried. check_meta(meta) runs before any array is read
        (it raises when the run cannot resume from it). CheckpointError when no checkpoint is intact,
        now or in an earlier start (damaged/ holds checkpoints and checkpoints/ none).
        """
        for step in reversed(self.all_steps()):
            try:
                verified = _verify(self.manager, step)
                meta = _read(self.manager, step, verified, functools.partial(self.meta, step))
                check_meta(meta)
                check_parameter_layout(self.manager, step, {name: abstract_state[name] for name in PARAMETER_ITEMS})
                state, meta = _read(self.manager, step, verified, functools.partial(self.restore, step, abstract_state))
            except CheckpointDamaged as damaged:
                self._set_aside(damaged)
                continue
            return step, state, meta
        if damaged := checksums.set_aside_names(self.directory):
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: the damaged ones ({', '.join(damaged)}) are in "
                f"{checksums.damaged_dir(self.directory)}; copy intact checkpoints into {self.directory} to resume, "
                f"or move {checksums.damaged_dir(self.directory)} away to train from scratch"
            )
        return None

    def _set_aside(self, damaged: CheckpointDamaged) -> None:
        """Moves a damaged checkpoint into damaged/ (process 0; the others skip it) and forgets it."""
        if jax.process_index() == 0:
            target = checksums.set_aside(damaged.step_dir)
            logging.warning("%s; moved it to %s, trying the next older checkpoint.", damaged, target)
        self.manager.reload()

    def wait(self) -> None:
        """Blocks until any save in flight is committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class CheckpointReader:
    """Reads a run's checkpoints for tools and tests: one Orbax manager, nothing written or moved.

    Every read checks the files it needs against the checkpoint's manifest first. Where a choice is
    made (`select`, `intact`), a damaged checkpoint is skipped with a one-line warning (a training run
    may be using the workdir, so nothing is moved); a step the user asked for that is damaged is a
    CheckpointDamaged error. Use as a context manager, or call `close`.
    """

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.directory = checkpoint_dir(workdir)
        if not os.path.isdir(self.directory):
            raise CheckpointError(
                f"no checkpoints in {workdir!r}: train first (pggan-train "
                f"--config=... --workdir={workdir}) or pass the right --workdir"
            )
        self.manager = _manager(self.directory)

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.manager.close()

    def steps(self) -> list[int]:
        """Steps of every complete checkpoint, oldest first; CheckpointError if there is none."""
        steps = sorted(self.manager.all_steps())
        if not steps:
            raise CheckpointError(f"no complete checkpoint in {self.directory!r}")
        return steps

    def stage_final_steps(self) -> list[int]:
        """Steps of the checkpoints kept as the last of their resolution stage, oldest first; [] if none."""
        return [s for s in sorted(self.manager.all_steps()) if self._step_metadata(s).get("stage_final")]

    def _step_metadata(self, step: int) -> dict:
        return self.manager.metadata(step).custom_metadata

    def candidates(self, step: int | None = None, resolution: int | None = None) -> list[int]:
        """The checkpoints that fit a choice, oldest first: [step], those of a resolution stage, or all.

        Raises CheckpointError with a one-line message naming what exists when none fits.
        """
        steps = self.steps()
        if step is not None:
            if step not in steps:
                raise CheckpointError(f"no checkpoint at step {step} in {self.workdir!r}; available steps: {steps}")
            return [step]
        if resolution is None:
            return steps
        at_resolution = [s for s in steps if self._step_metadata(s).get("resolution") == resolution]
        if not at_resolution:
            available = sorted({self._step_metadata(s).get("resolution") for s in steps} - {None})
            raise CheckpointError(
                f"no checkpoint at resolution {resolution} in {self.workdir!r}; "
                f"resolutions with checkpoints: {available}"
            )
        return at_resolution

    def select(self, step: int | None = None, resolution: int | None = None, network: str | None = None) -> int:
        """Chooses a checkpoint: an exact step, the last one of a resolution stage, or the latest.

        With `network` ('ema' or 'raw'), the checkpoint's metadata and that generator are checked against
        their checksums: damaged checkpoints are skipped with a warning (the newest intact one is chosen),
        or, for an exact `step`, refused.
        """
        candidates = self.candidates(step, resolution)
        if network is None:
            return candidates[-1]
        items = _network_items(network)
        if newest := next(self._intact(reversed(candidates), items, exact=step is not None), None):
            return newest
        raise self._all_damaged(candidates)

    def intact(self, steps: Sequence[int], network: str = "ema") -> list[int]:
        """The given steps whose metadata and `network` generator verify, each damaged one skipped with a
        warning; CheckpointError if none is left."""
        if intact := list(self._intact(steps, _network_items(network))):
            return intact
        raise self._all_damaged(steps)

    def _intact(self, steps: Iterable[int], items: Sequence[str], *, exact: bool = False) -> Iterator[int]:
        """Each of `steps` whose files of `items` verify, lazily (see the class docstring)."""
        for step in steps:
            try:
                _verify(self.manager, step, items)
            except CheckpointDamaged as damaged:
                if exact:
                    raise CheckpointDamaged(
                        damaged.step_dir,
                        f"{damaged.reason}; choose another step (available: {sorted(self.manager.all_steps())})",
                    ) from None
                logging.warning("%s; skipping it.", damaged)
                continue
            yield step

    def _all_damaged(self, steps: Sequence[int]) -> CheckpointError:
        return CheckpointError(
            f"every checkpoint asked for in {self.workdir!r} ({', '.join(map(str, steps))}) is "
            f"damaged (see the warnings above); restore intact copies into {self.directory}"
        )

    def _checked_read(self, step: int, items: Sequence[str], read: Callable[[], Any]) -> Any:
        """read() after checking the files of `items`; CheckpointDamaged if they differ or fail to load."""
        return _read(self.manager, step, _verify(self.manager, step, items), read)

    def meta(self, step: int) -> dict:
        """The JSON metadata of one checkpoint (see the module docstring)."""
        return self._checked_read(step, ["meta"], lambda: _restore_meta(self.manager, step))

    def saved_item(self, step: int, item: str) -> dict:
        """One item of a checkpoint as saved (no target), e.g. 'counters' or an optional state item such as
        'augment' (adaptive augmentation's p and running sums): a tree of NumPy arrays."""

        def restore():
            return self.manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore()}))[item]

        return self._checked_read(step, [item], restore)

    def counters(self, step: int) -> dict[str, int]:
        """The int32 training counters of one checkpoint (skipped non-finite D and G updates, ...), as ints."""
        return {k: int(v) for k, v in self.saved_item(step, "counters").items()}

    def parameters(self, step: int, items: Sequence[str]) -> tuple[networks.ModelSpec, dict, dict]:
        """(model spec, {item: parameter tree as NumPy-backed arrays}, meta with 'step' added) of one checkpoint.

        items: names from PARAMETER_ITEMS ('generator_ema', 'generator', 'discriminator'); their files and the
        metadata are checked against the checkpoint's checksums first, their shapes against the config's model.
        """
        meta = self.meta(step)
        spec = networks.ModelSpec.from_config(json.loads(meta["config"])["model"])
        if not items:
            return spec, {}, {**meta, "step": step}
        expected = {
            item: networks.parameters(
                networks.abstract_discriminator(spec) if item == "discriminator" else networks.abstract_generator(spec)
            )
            for item in items
        }
        check_parameter_layout(self.manager, step, expected)
        targets = {
            item: ocp.args.StandardRestore(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree))
            for item, tree in expected.items()
        }
        restored = self._checked_read(
            step, list(items), lambda: self.manager.restore(step, args=ocp.args.Composite(**targets))
        )
        return spec, {item: restored[item] for item in items}, {**meta, "step": step}

    def generator(self, step: int, network: str = "ema") -> tuple[networks.Generator, dict]:
        """(Generator on the default device, meta with 'step' added) of one checkpoint; see `load_generator`."""
        item = _network_items(network)[0]
        spec, params, meta = self.parameters(step, [item])
        return networks.merge_parameters(networks.abstract_generator(spec), params[item]), meta


def _restore_meta(manager: ocp.CheckpointManager, step: int) -> dict:
    return dict(manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])


def _network_items(network: str) -> list[str]:
    """The checkpoint items a generator is read from: its parameters and the metadata."""
    if network not in NETWORK_ITEMS:
        raise CheckpointError(f"--network must be one of {sorted(NETWORK_ITEMS)}, got {network!r}")
    return [NETWORK_ITEMS[network], "meta"]


def check_parameter_layout(manager: ocp.CheckpointManager, step: int, expected: dict) -> None:
    """Compares the stored shapes of parameter items with `expected` ({item: tree of arrays or shapes}).

    Reads only Orbax's array metadata. Raises CheckpointError naming the first difference; a
    generator whose 4x4 bias has one value per pixel (16 x channels) was written by pggan before
    it followed the official per-channel bias, and is refused as such.
    """
    stored = manager.item_metadata(step)
    for item, tree in expected.items():
        saved = {
            jax.tree_util.keystr(p, simple=True, separator="/"): tuple(leaf.shape)
            for p, leaf in jax.tree_util.tree_flatten_with_path(stored[item])[0]
        }
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            name = jax.tree_util.keystr(path, simple=True, separator="/")
            shape = tuple(leaf.shape)
            if saved.get(name) == shape:
                continue
            step_dir = _step_dir(manager, step)
            if name == "blocks/0/dense/bias" and saved.get(name) == (16 * shape[0],):
                raise CheckpointError(
                    f"checkpoint {step_dir} was written by pggan 0.1, whose generator had one 4x4 bias per pixel "
                    f"({saved[name][0]} values) instead of the official one per channel ({shape[0]}); this version "
                    "cannot load it: train again, or import NVIDIA's network with pggan-import"
                )
            raise CheckpointError(
                f"checkpoint {step_dir} holds {item} parameter {name} of shape {saved.get(name)}, "
                f"but its config's model needs {shape}; it was not written by this version of pggan"
            )


def load_generator(
    workdir: str, *, step: int | None = None, resolution: int | None = None, network: str = "ema"
) -> tuple[networks.Generator, dict]:
    """Loads a generator for sampling from a run's workdir.

    Args:
      workdir: the training run's directory.
      step: exact checkpoint step (images shown); default the latest intact one.
      resolution: take the last intact checkpoint trained at this resolution instead.
      network: 'ema' (the smoothed generator, best samples) or 'raw' (the trained G).

    Returns:
      (Generator on the default device, meta dict with 'resolution', 'alpha', 'nimg', 'config', 'step', ...).
      Sample with `G(z, labels, resolution=meta['resolution'], alpha=meta['alpha'])` (the active
      resolution and fade-in of the last training round before the checkpoint).

    Raises:
      CheckpointError (one line): nothing fits the choice, the asked-for step is damaged
      (CheckpointDamaged), or every checkpoint that fits is.
    """
    with CheckpointReader(workdir) as reader:
        return reader.generator(reader.select(step, resolution, network), network)
