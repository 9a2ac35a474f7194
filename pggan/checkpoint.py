"""Orbax checkpoints of a training run: save, keep policy, restore on any device count, load G for tools.

Layout: `WORKDIR/checkpoints/<nimg>/` (the step number is the number of real images shown), with
items
  generator, discriminator, generator_ema: parameter trees (pure nested dicts, float32),
  optimizers: {'g', 'd'} Adam states,   counters: int32 scalars,
  spectral_u: only in runs with spectral normalization of D, its power-iteration vectors,
  meta: JSON {'nimg', 'round', 'phase' (the last round's schedule values), 'resolution', 'alpha',
    'stage_final', 'config' (the run's config as JSON), 'data_position', ...}.
Orbax writes each checkpoint to a temporary directory and renames it when complete, so a run killed
mid-write never leaves a checkpoint that loads. The newest few checkpoints are kept, plus, for good,
the last checkpoint of every resolution stage (marked `stage_final` in its step metadata).
No pickle is involved anywhere: arrays are stored by tensorstore, metadata as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from pggan import networks, normalization
from pggan.errors import UserError

STATE_ITEMS = ("generator", "discriminator", "generator_ema", "optimizers", "counters")
# Items only some runs' states hold (saved and restored when present): SN's power-iteration vectors.
OPTIONAL_STATE_ITEMS = (normalization.STATE_ITEM,)
NETWORK_ITEMS = {"ema": "generator_ema", "raw": "generator"}


class CheckpointError(UserError):
    """A checkpoint is missing or unusable; the message says what to do."""


def _item_handlers() -> dict:
    """A handler for every item, so that reading a step's metadata does not log a warning per item."""
    handlers = {name: ocp.StandardCheckpointHandler() for name in (*STATE_ITEMS, *OPTIONAL_STATE_ITEMS)}
    handlers["meta"] = ocp.JsonCheckpointHandler()
    return handlers


def _items_of(state: dict) -> list[str]:
    """The checkpoint items of a state: every STATE_ITEMS entry and the optional ones it holds."""
    return [*STATE_ITEMS, *(name for name in OPTIONAL_STATE_ITEMS if name in state)]


def _manager(directory: str, options: ocp.CheckpointManagerOptions | None = None) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(directory, options=options, item_handlers=_item_handlers())


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(os.path.expanduser(workdir)), "checkpoints")


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
            cleanup_tmp_directories=True)
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
                          custom_metadata={"stage_final": stage_final, "resolution": meta.get("resolution")})

    def meta(self, step: int) -> dict:
        """The JSON metadata of the checkpoint at `step` (no arrays are read)."""
        return dict(self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

    def restore(self, step: int, abstract_state: dict) -> tuple[dict, dict]:
        """Restores (state, meta) at `step` onto the shardings of `abstract_state` (any device count)."""
        names = _items_of(abstract_state)
        items = {name: ocp.args.StandardRestore(abstract_state[name]) for name in names}
        items["meta"] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return {name: restored[name] for name in names}, dict(restored["meta"])

    def wait(self) -> None:
        """Blocks until any save in flight is committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def read_meta(workdir: str, step: int) -> dict:
    """The JSON metadata of one checkpoint."""
    with _manager(checkpoint_dir(workdir)) as manager:
        return dict(manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])


def read_counters(workdir: str, step: int) -> dict[str, int]:
    """The int32 training counters of one checkpoint (skipped non-finite D and G updates, ...), as ints."""
    with _manager(checkpoint_dir(workdir)) as manager:  # no target: the counters as saved
        counters = manager.restore(step, args=ocp.args.Composite(counters=ocp.args.StandardRestore()))["counters"]
    return {k: int(v) for k, v in counters.items()}


def select_step(workdir: str, *, step: int | None = None, resolution: int | None = None) -> int:
    """Chooses a checkpoint: an exact step, the last one of a resolution stage, or the latest.

    Raises CheckpointError with a one-line message naming what exists when the choice is impossible.
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
            return step
        if resolution is None:
            return steps[-1]
        at_resolution = [s for s in steps if manager.metadata(s).custom_metadata.get("resolution") == resolution]
        if not at_resolution:
            available = sorted({manager.metadata(s).custom_metadata.get("resolution") for s in steps} - {None})
            raise CheckpointError(f"no checkpoint at resolution {resolution} in {workdir!r}; "
                                  f"resolutions with checkpoints: {available}")
        return at_resolution[-1]


def all_steps(workdir: str) -> list[int]:
    """Steps of every complete checkpoint, oldest first. Reads only; CheckpointError if there is none."""
    select_step(workdir)  # the one-line error for a workdir without checkpoints
    with _manager(checkpoint_dir(workdir)) as manager:
        return sorted(manager.all_steps())


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
      step: exact checkpoint step (images shown); default the latest.
      resolution: take the last checkpoint trained at this resolution instead.
      network: 'ema' (the smoothed generator, best samples) or 'raw' (the trained G).

    Returns:
      (Generator on the default device, meta dict with 'resolution', 'lod', 'nimg', 'config', ...).
      Sample with `G(z, labels, resolution=meta['resolution'], alpha=meta['alpha'])` (the active
      resolution and fade-in of the last training round before the checkpoint).
    """
    if network not in NETWORK_ITEMS:
        raise CheckpointError(f"--network must be one of {sorted(NETWORK_ITEMS)}, got {network!r}")
    chosen = select_step(workdir, step=step, resolution=resolution)
    meta = read_meta(workdir, chosen)
    spec = networks.ModelSpec.from_config(json.loads(meta["config"])["model"])
    abstract = networks.abstract_generator(spec)
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), networks.parameters(abstract))
    item = NETWORK_ITEMS[network]
    with _manager(checkpoint_dir(workdir)) as manager:
        params = manager.restore(chosen, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(target)}))[item]
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
