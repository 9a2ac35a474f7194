"""The training state and the run's progress, each defined once: a checkpoint's arrays and its metadata.

TrainState (a dict pytree, the checkpoint's array items):
  generator, discriminator, generator_ema: parameters as pure nested dicts (float32),
  optimizers: {'g': optimizer state, 'd': optimizer state} (`OptimizerConfig.transform`'s),
  counters: {'consecutive_nonfinite', 'skipped_d', 'skipped_g'}: int32 scalars,
  spectral_u: only with spectral normalization of D, its power-iteration vectors (`pggan.model.normalization`),
  augment: only with adaptive augmentation, its probability and running sums (`pggan.data.diff_augment`).
`new_state` builds one from parameter trees (fresh optimizer states and counters), for a new run and for
networks imported from elsewhere.

`Progress` holds the host-side counters of a run and converts itself to and from the checkpoint's
JSON metadata (`to_meta`, `from_meta`), which also records the config, the data position and the
active resolution and fade-in of the last round.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from pggan import checkpoint
from pggan.data import diff_augment
from pggan.data.diff_augment import AugmentConfig
from pggan.model import networks, normalization
from pggan.training.config import OptimizerConfig, TrainingConfig
from pggan.training.schedule import Phase

COUNTER_NAMES = ("consecutive_nonfinite", "skipped_d", "skipped_g")


def new_state(
    generator: dict,
    discriminator: dict,
    generator_ema: dict,
    spectral_u: dict | None = None,
    optimizer: OptimizerConfig = OptimizerConfig(),
    augment: dict | None = None,
) -> dict:
    """A TrainState of the given parameter trees, with fresh optimizer states and zero counters.

    An optimizer's initial state does not depend on its hyperparameters, only on `optimizer.name`.
    """
    transform = optimizer.transform("g")
    state = {
        "generator": generator,
        "discriminator": discriminator,
        "generator_ema": generator_ema,
        "optimizers": {"g": transform.init(generator), "d": transform.init(discriminator)},
        "counters": {name: jnp.zeros((), jnp.int32) for name in COUNTER_NAMES},
    }
    if spectral_u is not None:
        state[normalization.STATE_ITEM] = spectral_u
    if augment is not None:
        state[diff_augment.STATE_ITEM] = augment
    return state


def initial_state(
    spec: networks.ModelSpec,
    spectral: bool,
    seed,
    optimizer: OptimizerConfig = OptimizerConfig(),
    augment: AugmentConfig = AugmentConfig(),
) -> dict:
    """A fresh TrainState: G and D drawn from `seed`, EMA G = G, `optimizer`'s states, with `spectral`
    normalization of D its power-iteration vectors drawn from `seed` too, and adaptive augmentation's state."""
    g, d = networks.build_networks(spec, seed)
    g_params, d_params = networks.parameters(g), networks.parameters(d)
    vectors = None
    if spectral:
        vectors = normalization.SpectralNorm(networks.abstract_discriminator(spec)).init_vectors(
            jax.random.fold_in(jax.random.key(seed), 2)
        )
    augment_state = augment.initial_state() if augment.adaptive else None
    return new_state(g_params, d_params, jax.tree.map(jnp.copy, g_params), vectors, optimizer, augment_state)


def state_shapes(
    spec: networks.ModelSpec,
    spectral: bool,
    optimizer: OptimizerConfig = OptimizerConfig(),
    augment: AugmentConfig = AugmentConfig(),
) -> dict:
    """ShapeDtypeStructs of a TrainState (what a checkpoint holds), without building it."""
    return jax.eval_shape(functools.partial(initial_state, spec, spectral, optimizer=optimizer, augment=augment), 0)


@dataclasses.dataclass
class Progress:
    """Where a run is: images shown (nimg, the checkpoint step), schedule rounds, progress ticks, the
    first image of the current tick, the training wall time so far, and the last round's schedule
    values (None before the first round)."""

    nimg: int = 0
    round: int = 0
    tick: int = 0
    tick_start_nimg: int = 0
    elapsed_sec: float = 0.0
    phase: Phase | None = None

    def to_meta(self, config: TrainingConfig) -> dict:
        """The checkpoint's JSON metadata: these fields (the phase as a dict), the config as JSON, the
        data stream position, and the active resolution and alpha of the last round (what tools sample)."""
        return {
            **dataclasses.asdict(self),
            "config": config.to_json(),
            "data_position": self.nimg,
            "resolution": self.phase.resolution,
            "alpha": self.phase.alpha,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Progress:
        """The progress recorded in a checkpoint's metadata."""
        phase = dict(meta["phase"])
        phase.setdefault("ema_beta", 0.0)  # checkpoints imported by pggan 0.1 lack it; a resumed run recomputes it
        fields = {f.name: meta[f.name] for f in dataclasses.fields(cls) if f.name != "phase"}
        return cls(**fields, phase=Phase(**phase))


def imported_phase(spec: networks.ModelSpec, nimg: int, resolution: int, alpha: float) -> Phase:
    """The Phase recorded for networks trained elsewhere: their stage (resolution, fade-in) and lod;
    the schedule values they were trained with are unknown (zero)."""
    lod = spec.num_levels - 1 - networks.level_of(resolution, spec) + (1.0 - alpha)  # the schedule's lod
    return Phase(
        kimg=nimg / 1000,
        lod=lod,
        resolution=resolution,
        alpha=alpha,
        minibatch=0,
        g_lr=0.0,
        d_lr=0.0,
        tick_kimg=0.0,
        ema_beta=0.0,
    )


def save_networks(
    workdir: str,
    config: TrainingConfig | Mapping[str, Any],
    generator: dict,
    discriminator: dict,
    generator_ema: dict,
    *,
    nimg: int = 0,
    resolution: int | None = None,
    alpha: float = 1.0,
) -> int:
    """Writes a complete checkpoint from parameter trees alone (fresh Adam state, zero counters).

    Used to import networks trained elsewhere and to build fixtures: the result loads in every tool
    and resumes training like any checkpoint. The networks are taken as fully grown (final
    resolution, alpha = 1) unless `resolution` and `alpha` name the stage they were at; the
    checkpoint is kept as the last one of that stage. `config` (typed, or a ConfigDict) has the
    model of the parameters. Returns the step written (= nimg).
    """
    config = config if isinstance(config, TrainingConfig) else TrainingConfig.parse(config)
    resolution = resolution or config.model.resolution
    progress = Progress(nimg=nimg, tick_start_nimg=nimg, phase=imported_phase(config.model, nimg, resolution, alpha))
    store = checkpoint.CheckpointStore(workdir, async_save=False)
    state = new_state(generator, discriminator, generator_ema, optimizer=config.optimizer)
    store.save(nimg, state, progress.to_meta(config), stage_final=True)
    store.close()
    return nimg
