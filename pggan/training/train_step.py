"""The compiled training computation: state initialisation, optimizer resets and one schedule round.

A *round* is what the official loop runs between two schedule evaluations: `minibatch_repeats`
times { `d_repeats` x (D step + EMA update), then `g_repeats` G steps }, all at one lod (alpha and
learning rates are traced scalars, the resolution is static: one compile per resolution). The pure
per-device functions are in `pggan.training.step_updates`; `TrainStep` compiles them as one jitted
`shard_map` over the 1-D 'data' mesh and caches the compiled calls. With lazy regularization
(`LossConfig.reg_interval` = k) a penalty-only D step follows every D step whose run-wide index
(round index * D steps per round + index in the round) is a multiple of k; which D steps those are
is static per compiled call, so a resumed run repeats them exactly.

The state the step transforms is a TrainState (`pggan.training.train_state`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from pggan import parallel
from pggan.data.diff_augment import AugmentConfig
from pggan.model import losses, networks
from pggan.training.config import OptimizerConfig
from pggan.training.step_updates import RoundData, RoundScalars, StepConfig, TrainingUpdates
from pggan.training.train_state import initial_state, state_shapes


@functools.lru_cache(maxsize=16)
def _compiled_initial_state(
    architecture: networks.ModelSpec,
    spectral: bool,
    optimizer: OptimizerConfig,
    augment: AugmentConfig,
    mesh: jax.sharding.Mesh,
):
    """seed (uint32) -> replicated TrainState, jitted once per architecture, state settings and mesh: the seed
    is traced, and XLA:CPU needs tens of seconds to compile the parameter RNG."""
    return jax.jit(
        functools.partial(initial_state, architecture, spectral, optimizer=optimizer, augment=augment),
        out_shardings=parallel.replicated(mesh),
    )


class TrainStep:
    """Compiles and caches the jitted functions of one training run for a model, loss and mesh.

    Use `TrainStep.create(...)`: instances are shared per (spec, loss, config, mesh), so runs in one
    process (resumes, tests, notebooks) reuse the compiled rounds.
    """

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def create(
        spec: networks.ModelSpec, loss: losses.LossConfig, config: StepConfig, mesh: jax.sharding.Mesh
    ) -> TrainStep:
        return TrainStep(spec, loss, config, mesh)

    def __init__(self, spec: networks.ModelSpec, loss: losses.LossConfig, config: StepConfig, mesh: jax.sharding.Mesh):
        self.spec, self.loss, self.config, self.mesh = spec, loss, config, mesh
        self.updates = TrainingUpdates(spec, loss, config)
        self._calls: dict[tuple, Any] = {}
        self._reset = jax.jit(self.updates.reset_optimizers, donate_argnums=0)

    # ---------------------------------------------------------------------------------------- state

    def init_state(self, seed: int) -> dict:
        """Fresh state from `seed` (an integer in [0, 2**32)), created directly on the devices, replicated."""
        # The compute settings do not change the parameters: every dtype and form shares one compile.
        architecture = dataclasses.replace(
            self.spec, **{f: getattr(networks.ModelSpec, f) for f in networks.ModelSpec.COMPUTE_FIELDS}
        )
        # Nor do the optimizer's hyperparameters: only its name shapes its state.
        optimizer = OptimizerConfig(name=self.config.optimizer.name)
        return _compiled_initial_state(architecture, self._spectral, optimizer, self.config.augment, self.mesh)(
            np.uint32(seed)
        )

    @property
    def _spectral(self) -> bool:
        return self.updates.spectral is not None

    def abstract_state(self) -> dict:
        """ShapeDtypeStructs of the state with replicated shardings on this mesh (restore target)."""
        sharding = parallel.replicated(self.mesh)
        shapes = state_shapes(self.spec, self._spectral, self.config.optimizer, self.config.augment)
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)

    def reset_optimizers(self, state: dict) -> dict:
        """Resets both optimizer states (official reset at every lod boundary). Donates `state`."""
        return self._reset(state)

    # ---------------------------------------------------------------------------------------- round

    def repeats_per_call(self) -> int:
        """Minibatch repeats compiled into one call (`StepConfig.repeats_per_call`; 0 = automatic).

        Automatic: 1 on CPUs, where compile time grows with the repeats traced into one call and
        dispatch costs little, and the whole round elsewhere, which saves per-call dispatch.
        """
        per_call = self.config.repeats_per_call or (
            1 if self.mesh.devices.flat[0].platform == "cpu" else self.config.minibatch_repeats
        )
        if self.config.minibatch_repeats % per_call:
            raise ValueError(
                f"repeats_per_call={per_call} must divide minibatch_repeats={self.config.minibatch_repeats}"
            )
        return per_call

    def penalty_pattern(self, round_index: int, first_repeat: int, repeats: int) -> tuple[bool, ...]:
        """For each D step of `repeats` repeats from `first_repeat` of round `round_index`: whether a lazy
        penalty step follows it (run-wide D step index divisible by reg_interval). () when not lazy."""
        if not self.loss.lazy:
            return ()
        d_repeats, per_round = self.config.d_repeats, self.config.d_repeats * self.config.minibatch_repeats
        first = round_index * per_round + first_repeat * d_repeats
        return tuple((first + i) % self.loss.reg_interval == 0 for i in range(repeats * d_repeats))

    def round_fn(self, resolution: int, minibatch: int):
        """One schedule round for a resolution and global minibatch (compiled once per data kind, cached).

        Returns f(state, data, scalars, round_index=0) where data is the round's reals
        (`step_updates.HostBatches` or `step_updates.HeldLevel`), scalars a `step_updates.RoundScalars`,
        and round_index (Python int) the round's index in the run, which places lazy penalty steps;
        f returns (state, metric_sums) with float32 sums over the round's steps
        (`step_updates.METRIC_NAMES` and `COUNT_NAMES`). `state` is donated.
        The round runs as minibatch_repeats / repeats_per_call() calls of one compiled function (one per
        lazy penalty pattern); the result does not depend on that split.
        """
        networks.level_of(resolution, self.spec)  # validates before any tracing
        return functools.partial(self._run_calls, resolution, minibatch)

    def call_fn(self, resolution: int, minibatch: int, data_kind: type, pattern: tuple = ()):
        """The jitted function behind `round_fn`: `repeats_per_call()` minibatch repeats in one call.

        f(state, data, scalars, first_repeat) with round_fn's arguments and `first_repeat` (int32
        scalar, the round's repeat index the call starts at); returns (state, metric_sums of its
        repeats). `data_kind` is the type of `data`; `pattern` the call's lazy penalty pattern
        (`penalty_pattern`). Jitted once per (resolution, minibatch, data kind, pattern);
        `.lower(...).compile()` gives XLA's cost and memory analyses.
        """
        cache_key = (resolution, minibatch, data_kind, pattern)
        if cache_key not in self._calls:
            per_device = functools.partial(self._per_device_call, resolution, minibatch, pattern)
            in_specs = (P(), data_kind.partition_specs(), P(), P())
            sharded = jax.shard_map(per_device, mesh=self.mesh, in_specs=in_specs, out_specs=(P(), P()))
            self._calls[cache_key] = jax.jit(sharded, donate_argnums=0, compiler_options=self._compiler_options())
        return self._calls[cache_key]

    def _per_device_call(
        self,
        resolution: int,
        minibatch: int,
        pattern: tuple,
        state: dict,
        data: RoundData,
        scalars: RoundScalars,
        first_repeat,
    ):
        fetch = data.fetcher(minibatch, self.config.data_seed)
        return self.updates.repeats(
            state,
            fetch,
            data.local_batch(minibatch),
            scalars,
            first_repeat,
            resolution=resolution,
            count=self.repeats_per_call(),
            pattern=pattern,
        )

    def _compiler_options(self) -> dict | None:
        """XLA options of the step (None: XLA's defaults).

        bfloat16 steps keep bfloat16 rounding exactly where the program has it. With XLA's default excess
        precision, fusions may skip bf16 round trips in some recomputations of a value but not others;
        `layers.leaky_relu`'s gradient (jnp.maximum's, which compares its input with its output) then finds
        them unequal and drops most of the gradient. Measured on XLA:CPU: D's input-gradient norm 2.5x too
        small at 8x8 (tests/test_benchmark.py).

        On CPUs, unless `StepConfig.cpu_ynnpack`, XLA's YNNPACK fusions are turned off as for every pggan
        program (`parallel.compiler_options`): on the 2-core x86-64 machine of BENCHMARKS.md the training
        step ran 1.4x faster at width 64 and 1.5x at width 512, with both cores busy instead of 1.4.
        """
        options = parallel.compiler_options(self.mesh.devices.flat[0].platform, ynnpack=self.config.cpu_ynnpack)
        if self.spec.compute_dtype == "bfloat16":
            options["xla_allow_excess_precision"] = False
        return options or None

    def _run_calls(
        self, resolution: int, minibatch: int, state: dict, data: RoundData, scalars: RoundScalars, round_index: int = 0
    ):
        """Runs a round as consecutive calls, each starting at its first repeat index; sums the metrics."""
        total, per_call = None, self.repeats_per_call()
        for first_repeat in range(0, self.config.minibatch_repeats, per_call):
            pattern = self.penalty_pattern(round_index, first_repeat, per_call)
            compiled = self.call_fn(resolution, minibatch, type(data), pattern)
            state, sums = compiled(state, data, scalars, jnp.int32(first_repeat))
            total = sums if total is None else jax.tree.map(jnp.add, total, sums)
        return state, total
