"""Orbax checkpoints of a training run: save, keep policy, restore on any device count, load G for tools.

Layout: `WORKDIR/checkpoints/<nimg>/` (the step number is the number of real images shown), with
items
  generator, discriminator, generator_ema: parameter trees (pure nested dicts, float32),
  optimizers: {'g', 'd'} Adam states,   counters: int32 scalars,
  spectral_u: only in runs with spectral normalization of D, its power-iteration vectors,
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
import json
import os
import textwrap
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers

from pggan import checksums, networks, normalization
from pggan.errors import UserError

STATE_ITEMS = ("generator", "discriminator", "generator_ema", "optimizers", "counters")
# Items only some runs' states hold (saved and restored when present): SN's power-iteration vectors.
OPTIONAL_STATE_ITEMS = (normalization.STATE_ITEM,)
NETWORK_ITEMS = {"ema": "generator_ema", "raw": "generator"}
# Step metadata mark of checkpoints that get a checksum manifest; one without the mark and without a
# manifest was written before checksums existed.
CHECKSUMS_KEY = "checksums"


class CheckpointError(UserError):
    """A checkpoint is missing or unusable; the message says what to do."""


class CheckpointDamaged(CheckpointError):
    """A checkpoint whose files fail their checksums, or that fails to load; the message names it."""

    def __init__(self, step_dir: str, reason: str):
        self.step_dir, self.reason = step_dir, reason
        super().__init__(f"checkpoint {os.path.basename(step_dir)} in {os.path.dirname(step_dir)} is damaged: "
                         f"{reason}")


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
    except Exception as e:  # noqa: BLE001 - see the docstring
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
            preservation_policy=policy, create=True, enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True, temporary_path_class=_ChecksummedStep)
        self.manager = _manager(self.directory, options)
        for step in self.manager.all_steps():
            if self.manager.metadata(step).custom_metadata.get("stage_final"):
                self._stage_final.steps.add(step)

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
        self.manager.save(step, args=ocp.args.Composite(**items), force=True,
                          custom_metadata={"stage_final": stage_final, "resolution": meta.get("resolution"),
                                           CHECKSUMS_KEY: checksums.MANIFEST})

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
                meta = _read(self.manager, step, verified, lambda: self.meta(step))
                check_meta(meta)
                state, meta = _read(self.manager, step, verified, lambda: self.restore(step, abstract_state))
            except CheckpointDamaged as damaged:
                self._set_aside(damaged)
                continue
            return step, state, meta
        if damaged := checksums.set_aside_names(self.directory):
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: the damaged ones ({', '.join(damaged)}) are in "
                f"{checksums.damaged_dir(self.directory)}; copy intact checkpoints into {self.directory} to resume, "
                f"or move {checksums.damaged_dir(self.directory)} away to train from scratch")
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


def _read_checked(workdir: str, step: int, items: Sequence[str], read: Callable[[ocp.CheckpointManager], Any]) -> Any:
    """read(manager) of one checkpoint after checking the files of `items`; CheckpointDamaged if they differ."""
    with _manager(checkpoint_dir(workdir)) as manager:
        verified = _verify(manager, step, items)
        return _read(manager, step, verified, lambda: read(manager))


def _restore_meta(manager: ocp.CheckpointManager, step: int) -> dict:
    return dict(manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])


def read_meta(workdir: str, step: int) -> dict:
    """The JSON metadata of one checkpoint, checked against its checksums (CheckpointDamaged if it differs)."""
    return _read_checked(workdir, step, ["meta"], lambda manager: _restore_meta(manager, step))


def read_counters(workdir: str, step: int) -> dict[str, int]:
    """The int32 training counters of one checkpoint (skipped non-finite D and G updates, ...), as ints."""
    def restore(manager):  # no target: the counters as saved
        return manager.restore(step, args=ocp.args.Composite(counters=ocp.args.StandardRestore()))["counters"]

    return {k: int(v) for k, v in _read_checked(workdir, step, ["counters"], restore).items()}


def _candidates(workdir: str, step: int | None, resolution: int | None) -> list[int]:
    """The checkpoints that fit the choice, oldest first: [step], those of a resolution stage, or all.

    Raises CheckpointError with a one-line message naming what exists when none fits.
    """
    directory = checkpoint_dir(workdir)
    if not os.path.isdir(directory):
        raise CheckpointError(f"no checkpoints in {workdir!r}: train first (python -m pggan.main "
                              f"--config=... --workdir={workdir}) or pass the right --workdir")
    with _manager(directory) as manager:
        steps = sorted(manager.all_steps())
        if not steps:
            raise CheckpointError(f"no complete checkpoint in {directory!r}")
        if step is not None:
            if step not in steps:
                raise CheckpointError(f"no checkpoint at step {step} in {workdir!r}; available steps: {steps}")
            return [step]
        if resolution is None:
            return steps
        at_resolution = [s for s in steps if manager.metadata(s).custom_metadata.get("resolution") == resolution]
        if not at_resolution:
            available = sorted({manager.metadata(s).custom_metadata.get("resolution") for s in steps} - {None})
            raise CheckpointError(f"no checkpoint at resolution {resolution} in {workdir!r}; "
                                  f"resolutions with checkpoints: {available}")
        return at_resolution


def _network_items(network: str) -> list[str]:
    """The checkpoint items a generator is read from: its parameters and the metadata."""
    if network not in NETWORK_ITEMS:
        raise CheckpointError(f"--network must be one of {sorted(NETWORK_ITEMS)}, got {network!r}")
    return [NETWORK_ITEMS[network], "meta"]


def _intact(manager: ocp.CheckpointManager, steps: Iterable[int], items: Sequence[str], *,
            exact: bool = False) -> Iterator[tuple[int, bool]]:
    """(step, verified) for each of `steps` whose files of `items` verify, lazily.

    A damaged one is skipped with a one-line warning; nothing is moved (a training run may be using
    the workdir). With `exact` (a step the user asked for) a damaged one is the error itself.
    """
    for step in steps:
        try:
            yield step, _verify(manager, step, items)
        except CheckpointDamaged as damaged:
            if exact:
                raise CheckpointDamaged(damaged.step_dir, f"{damaged.reason}; choose another step (available: "
                                        f"{sorted(manager.all_steps())})") from None
            logging.warning("%s; skipping it.", damaged)


def _all_damaged(workdir: str, steps: Sequence[int]) -> CheckpointError:
    return CheckpointError(f"every checkpoint asked for in {workdir!r} ({', '.join(map(str, steps))}) is damaged "
                           f"(see the warnings above); restore intact copies into {checkpoint_dir(workdir)}")


def _newest_intact(workdir: str, candidates: Sequence[int], items: Sequence[str], *, exact: bool) -> tuple[int, bool]:
    """(step, verified) of the newest candidate whose files of `items` verify (see `_intact`)."""
    with _manager(checkpoint_dir(workdir)) as manager:
        if newest := next(_intact(manager, reversed(candidates), items, exact=exact), None):
            return newest
    raise _all_damaged(workdir, candidates)


def select_step(workdir: str, *, step: int | None = None, resolution: int | None = None,
                network: str | None = None) -> int:
    """Chooses a checkpoint: an exact step, the last one of a resolution stage, or the latest.

    With `network` ('ema' or 'raw'), the checkpoint's metadata and that generator are checked against
    their checksums: damaged checkpoints are skipped with a warning (the newest intact one is chosen),
    or, for an exact `step`, refused. Raises CheckpointError with a one-line message naming what
    exists when the choice is impossible.
    """
    candidates = _candidates(workdir, step, resolution)
    if network is None:
        return candidates[-1]
    return _newest_intact(workdir, candidates, _network_items(network), exact=step is not None)[0]


def intact_steps(workdir: str, steps: Sequence[int], network: str = "ema") -> list[int]:
    """The given steps whose metadata and `network` generator verify, each damaged one skipped with a
    warning; CheckpointError if none is left."""
    with _manager(checkpoint_dir(workdir)) as manager:
        if intact := [step for step, _ in _intact(manager, steps, _network_items(network))]:
            return intact
    raise _all_damaged(workdir, steps)


def all_steps(workdir: str) -> list[int]:
    """Steps of every complete checkpoint, oldest first. Reads only; CheckpointError if there is none."""
    return _candidates(workdir, None, None)


def stage_final_steps(workdir: str) -> list[int]:
    """Steps of the checkpoints kept as the last of their resolution stage, oldest first; [] if none.

    Reads only (unlike opening a CheckpointStore); call select_step first for a clear error when
    the workdir holds no checkpoints.
    """
    with _manager(checkpoint_dir(workdir)) as manager:
        return sorted(s for s in manager.all_steps() if manager.metadata(s).custom_metadata.get("stage_final"))


def load_generator(workdir: str, *, step: int | None = None, resolution: int | None = None,
                   network: str = "ema") -> tuple[networks.Generator, dict]:
    """Loads a generator for sampling from a run's workdir.

    Args:
      workdir: the training run's directory.
      step: exact checkpoint step (images shown); default the latest intact one.
      resolution: take the last intact checkpoint trained at this resolution instead.
      network: 'ema' (the smoothed generator, best samples) or 'raw' (the trained G).

    Returns:
      (Generator on the default device, meta dict with 'resolution', 'lod', 'nimg', 'config', ...).
      Sample with `G(z, labels, resolution=meta['resolution'], alpha=meta['alpha'])` (the active
      resolution and fade-in of the last training round before the checkpoint).

    Raises:
      CheckpointError (one line): nothing fits the choice, the asked-for step is damaged
      (CheckpointDamaged), or every checkpoint that fits is.
    """
    items = _network_items(network)
    chosen, verified = _newest_intact(workdir, _candidates(workdir, step, resolution), items, exact=step is not None)
    with _manager(checkpoint_dir(workdir)) as manager:
        meta = _read(manager, chosen, verified, lambda: _restore_meta(manager, chosen))
        spec = networks.ModelSpec.from_config(json.loads(meta["config"])["model"])
        abstract = networks.abstract_generator(spec)
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), networks.parameters(abstract))
        item = items[0]
        params = _read(manager, chosen, verified, lambda: manager.restore(
            chosen, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(target)}))[item])
    return networks.merge_parameters(abstract, params), {**meta, "step": chosen}


def save_networks(workdir: str, config, generator: dict, discriminator: dict, generator_ema: dict, *,
                  nimg: int = 0, resolution: int | None = None, alpha: float = 1.0) -> int:
    """Writes a complete checkpoint from parameter trees alone (fresh Adam state, zero counters).

    Used to import networks trained elsewhere and to build fixtures: the result loads in every tool
    and resumes training like any checkpoint. The networks are taken as fully grown (final
    resolution, alpha = 1) unless `resolution` and `alpha` name the stage they were at; the
    checkpoint is kept as the last one of that stage. `config` is an ml_collections training config
    whose `model` section matches the parameters. Returns the step written (= nimg).
    """
    import optax  # local: only this helper builds optimizer state outside the trainer

    spec = networks.ModelSpec.from_config(config.model)
    resolution = resolution or spec.resolution
    lod = spec.num_levels - 1 - networks.level_of(resolution, spec) + (1.0 - alpha)  # schedule.py's lod
    adam = optax.scale_by_adam()  # the initial state (zero moments and count) does not depend on the settings
    state = {
        "generator": generator, "discriminator": discriminator, "generator_ema": generator_ema,
        "optimizers": {"g": adam.init(generator), "d": adam.init(discriminator)},
        "counters": {k: jax.numpy.zeros((), jax.numpy.int32) for k in ("consecutive_nonfinite", "skipped_d", "skipped_g")},
    }
    phase = {"kimg": nimg / 1000, "lod": lod, "resolution": resolution, "alpha": alpha, "minibatch": 0,
             "g_lr": 0.0, "d_lr": 0.0, "tick_kimg": 0.0}
    meta = {"nimg": nimg, "round": 0, "tick": 0, "tick_start_nimg": nimg, "elapsed_sec": 0.0, "phase": phase,
            "config": config.to_json(), "data_position": nimg, "resolution": resolution, "alpha": alpha}
    store = CheckpointStore(workdir, async_save=False)
    store.save(nimg, state, meta, stage_final=True)
    store.close()
    return nimg
