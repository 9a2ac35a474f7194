"""The compiled training computation: state initialisation, optimizer resets and one schedule round.

A *round* is what the official loop runs between two schedule evaluations: `minibatch_repeats`
times { `d_repeats` x (D step + EMA update), then `g_repeats` G steps }, all at one lod (alpha and
learning rates are traced scalars, the resolution is static: one compile per resolution). With lazy
regularization (`LossConfig.reg_interval` = k) a penalty-only D step follows every D step whose
run-wide index (round index * D steps per round + index in the round) is a multiple of k; which D
steps those are is static per compiled call, so a resumed run repeats them exactly. The round is a
single jitted `shard_map` over the 1-D 'data' mesh; parameters and optimizer state are replicated,
reals are split over devices in the strided layout of `pggan.parallel`, and gradients are those of
the all-device mean loss (pmap's `pmean` of per-device gradients). Where memory requires it, each
device runs its minibatch as microbatches of whole minibatch-stddev groups and averages their
gradients (`pggan.microbatching`, `StepConfig.max_microbatch_per_device`): the same function.

Randomness is a pure function of (seed, round index, step within the round, global sample id), so
results do not depend on the device count and a resumed run repeats an uninterrupted one exactly.

TrainState (a dict pytree, the checkpoint's array content):
  generator, discriminator, generator_ema: parameters as pure nested dicts (float32),
  optimizers: {'g': Adam state, 'd': Adam state},
  counters: {'consecutive_nonfinite': int32 [], 'skipped_d': int32 [], 'skipped_g': int32 []},
  spectral_u: only with spectral normalization of D, its power-iteration vectors (`pggan.normalization`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from pggan import layers, losses, microbatching, networks, normalization, parallel
from pggan.data import augment, device_dataset

# Streams of per-sample randomness within one step.
_LATENT_D, _MIX, _FLIP, _LATENT_G, _LABEL_G = range(5)

METRIC_NAMES = ("d_loss", "g_loss", "real_score", "fake_score", *losses.PENALTY_METRICS, "skipped_d", "skipped_g")
# Step counts summed beside the metrics: the divisors of their means (see `summarize_metrics`).
COUNT_NAMES = ("d_steps", "g_steps", "penalty_steps")


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static settings of the compiled step.

    g_beta1, g_beta2, d_beta1, d_beta2, eps: Adam of G and of D (official: 0, 0.99 for both, 1e-8);
      D's betas get the lazy-regularization correction (`LossConfig.adam_correction`).
    mirror_augment: random horizontal flips of reals.
    minibatch_repeats, d_repeats, g_repeats: round structure (D and G updates per repeat: TTUR counts).
    label_probs: class prior [label_size] for the G step's random labels (None if unconditional).
    data_seed: seed of the example order (used when the dataset level is held on the devices).
    repeats_per_call: minibatch repeats per compiled call (0 = automatic, see
      `TrainStep.repeats_per_call`); a speed setting that does not change the results.
    normalization: D's Lipschitz normalization (none, spectral, GraN; `pggan.normalization`).
    max_microbatch_per_device: ((resolution, images), ...): at these resolutions each device runs its
      minibatch as microbatches of at most that many images and accumulates the gradients
      (`pggan.microbatching`); a memory setting that does not change the results.
    max_consecutive_nonfinite: once this many repeats in a row had a non-finite gradient, the rest
      of the round changes nothing (the trainer then stops at exactly this count); 0 = no limit.
    """

    g_beta1: float = 0.0
    g_beta2: float = 0.99
    d_beta1: float = 0.0
    d_beta2: float = 0.99
    eps: float = 1e-8
    mirror_augment: bool = False
    minibatch_repeats: int = 4
    d_repeats: int = 1
    g_repeats: int = 1
    label_probs: tuple[float, ...] | None = None
    data_seed: int = 0
    repeats_per_call: int = 0
    normalization: normalization.NormalizationConfig = normalization.NormalizationConfig()
    max_microbatch_per_device: tuple[tuple[int, int], ...] = ()
    max_consecutive_nonfinite: int = 0

    @classmethod
    def from_config(cls, config, schedule, label_probs: tuple[float, ...] | None = None) -> "StepConfig":
        """The step settings of a training config (ml_collections) and its parsed `Schedule`."""
        optimizer = config.optimizer
        return cls(g_beta1=optimizer.g_beta1, g_beta2=optimizer.g_beta2, d_beta1=optimizer.d_beta1,
                   d_beta2=optimizer.d_beta2, eps=optimizer.eps, mirror_augment=config.dataset.mirror_augment,
                   minibatch_repeats=schedule.minibatch_repeats, d_repeats=schedule.d_repeats,
                   g_repeats=schedule.g_repeats, label_probs=label_probs, data_seed=config.seed,
                   normalization=normalization.NormalizationConfig.from_config(config.d_normalization),
                   max_microbatch_per_device=tuple(sorted(schedule.max_microbatch_per_device.items())),
                   max_consecutive_nonfinite=config.max_consecutive_nonfinite)


def state_shapes(spec: networks.ModelSpec, spectral: bool) -> dict:
    """ShapeDtypeStructs of a TrainState (what a checkpoint holds), without building it."""
    return jax.eval_shape(functools.partial(initial_state, spec, spectral), 0)


def _per_sample(key: jax.Array, sample_ids: jax.Array, fn):
    """Applies fn(key_n) for every sample with key_n = fold_in(key, global sample id n)."""
    return jax.vmap(lambda i: fn(jax.random.fold_in(key, i)))(sample_ids)


def summarize_metrics(sums: dict) -> tuple[dict[str, float], dict[str, int]]:
    """(means, skipped counts) of metric sums over any number of rounds.

    D metrics are averaged over D steps, g_loss over G steps, the PENALTY_METRICS over the steps that
    computed penalties (every D step, or the lazy penalty steps; 0 when there were none).
    """
    sums = {k: float(v) for k, v in jax.device_get(sums).items()}
    divisors = {"g_loss": "g_steps", **{name: "penalty_steps" for name in losses.PENALTY_METRICS}}
    means = {k: v / max(sums[divisors.get(k, "d_steps")], 1.0) for k, v in sums.items()
             if k not in COUNT_NAMES and not k.startswith("skipped")}
    return means, {k: int(v) for k, v in sums.items() if k.startswith("skipped")}


def initial_state(spec: networks.ModelSpec, spectral: bool, seed) -> dict:
    """A fresh TrainState: G and D drawn from `seed`, EMA G = G, zero Adam moments, zero counters and,
    with `spectral` normalization of D, its power-iteration vectors.

    Adam's initial state does not depend on its hyperparameters, so one function serves every
    StepConfig.
    """
    g, d = networks.build_networks(spec, seed)
    g_params, d_params = networks.parameters(g), networks.parameters(d)
    adam = optax.scale_by_adam()
    state = {
        "generator": g_params, "discriminator": d_params,
        "generator_ema": jax.tree.map(jnp.copy, g_params),
        "optimizers": {"g": adam.init(g_params), "d": adam.init(d_params)},
        "counters": {k: jnp.zeros((), jnp.int32) for k in ("consecutive_nonfinite", "skipped_d", "skipped_g")},
    }
    if spectral:
        vectors = normalization.SpectralNorm(networks.abstract_discriminator(spec))
        state[normalization.STATE_ITEM] = vectors.init_vectors(jax.random.fold_in(jax.random.key(seed), 2))
    return state


@functools.lru_cache(maxsize=16)
def _compiled_initial_state(architecture: networks.ModelSpec, spectral: bool, mesh: jax.sharding.Mesh):
    """seed (uint32) -> replicated TrainState, jitted once per architecture and mesh: the seed is
    traced, and XLA:CPU needs tens of seconds to compile the parameter RNG."""
    return jax.jit(functools.partial(initial_state, architecture, spectral), out_shardings=parallel.replicated(mesh))


class TrainStep:
    """Builds the jitted functions of one training run for a model, loss and mesh.

    Use `TrainStep.create(...)`: instances are shared per (spec, loss, config, mesh), so runs in one
    process (resumes, tests, notebooks) reuse the compiled rounds.
    """

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def create(spec: networks.ModelSpec, loss: losses.LossConfig, config: StepConfig,
               mesh: jax.sharding.Mesh) -> "TrainStep":
        return TrainStep(spec, loss, config, mesh)

    def __init__(self, spec: networks.ModelSpec, loss: losses.LossConfig, config: StepConfig,
                 mesh: jax.sharding.Mesh):
        self.spec, self.loss, self.config, self.mesh = spec, loss, config, mesh
        self.g_def = nnx.graphdef(networks.abstract_generator(spec))
        abstract_d = networks.abstract_discriminator(spec)
        self.d_def = nnx.graphdef(abstract_d)
        c = loss.adam_correction
        self.g_adam = optax.scale_by_adam(b1=config.g_beta1, b2=config.g_beta2, eps=config.eps)
        self.d_adam = optax.scale_by_adam(b1=config.d_beta1 ** c, b2=config.d_beta2 ** c, eps=config.eps)
        self.spectral = normalization.SpectralNorm(abstract_d) if config.normalization.method == "spectral" else None
        self._rounds: dict[tuple, Any] = {}
        self._reset = jax.jit(self._reset_optimizers, donate_argnums=0)

    # ---------------------------------------------------------------------------------------- state

    def init_state(self, seed: int) -> dict:
        """Fresh state from `seed` (an integer in [0, 2**32)), created directly on the devices, replicated."""
        # The compute settings do not change the parameters: every dtype and form shares one compile.
        architecture = dataclasses.replace(self.spec, **{f: getattr(networks.ModelSpec, f)
                                                         for f in networks.ModelSpec.COMPUTE_FIELDS})
        return _compiled_initial_state(architecture, self.spectral is not None, self.mesh)(np.uint32(seed))

    def abstract_state(self) -> dict:
        """ShapeDtypeStructs of the state with replicated shardings on this mesh (restore target)."""
        sharding = parallel.replicated(self.mesh)
        shapes = state_shapes(self.spec, self.spectral is not None)
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)

    def _reset_optimizers(self, state: dict) -> dict:
        optimizers = {"g": self.g_adam.init(state["generator"]), "d": self.d_adam.init(state["discriminator"])}
        return {**state, "optimizers": optimizers}

    def reset_optimizers(self, state: dict) -> dict:
        """Zeroes both Adam states (official reset at every lod boundary). Donates `state`."""
        return self._reset(state)

    # ---------------------------------------------------------------------------------------- round

    def repeats_per_call(self) -> int:
        """Minibatch repeats compiled into one call (`StepConfig.repeats_per_call`; 0 = automatic).

        Automatic: 1 on CPUs, where compile time grows with the repeats traced into one call and
        dispatch costs little, and the whole round elsewhere, which saves per-call dispatch.
        """
        per_call = self.config.repeats_per_call or (1 if self.mesh.devices.flat[0].platform == "cpu"
                                                    else self.config.minibatch_repeats)
        if self.config.minibatch_repeats % per_call:
            raise ValueError(f"repeats_per_call={per_call} must divide minibatch_repeats="
                             f"{self.config.minibatch_repeats}")
        return per_call

    def penalty_pattern(self, round_index: int, first_repeat: int, repeats: int) -> tuple[bool, ...]:
        """For each D step of `repeats` repeats from `first_repeat` of round `round_index`: whether a lazy
        penalty step follows it (run-wide D step index divisible by reg_interval). () when not lazy."""
        if not self.loss.lazy:
            return ()
        d_repeats, per_round = self.config.d_repeats, self.config.d_repeats * self.config.minibatch_repeats
        first = round_index * per_round + first_repeat * d_repeats
        return tuple((first + i) % self.loss.reg_interval == 0 for i in range(repeats * d_repeats))

    def round_fn(self, resolution: int, minibatch: int, *, on_device_data: bool = False):
        """One schedule round for a resolution and global minibatch (compiled once, cached).

        With host data, returns f(state, images, labels, alpha, g_lr, d_lr, ema_beta, key, round_index=0)
        where
          images: uint8 [S, minibatch, r, r, C] with S = minibatch_repeats * d_repeats, split over
            devices along axis 1 in the strided layout (`parallel.device_major_order`);
          labels: int32 [S, minibatch] (ignored when unconditional), same layout.
        With on-device data, returns f(state, level_images, level_labels, position, alpha, g_lr, d_lr,
        ema_beta, key, round_index=0) where level_images uint8 [N, r, r, C] and level_labels int32 [N] are a
        whole dataset level replicated on every device (`pggan.data.device_dataset`), and `position` (uint32
        scalar) is the stream position of the round's first real image: D step s reads positions
        position + s * minibatch + (global sample ids), exactly what the host pipeline would deliver.
        Both: alpha, g_lr, d_lr, ema_beta (EMA decay per D step) float32 scalars; key the round's PRNG
        key; round_index (Python int) the round's index in the run, which places lazy penalty steps;
        returns (state, metric_sums) with float32 sums over the round's steps (METRIC_NAMES and
        COUNT_NAMES). `state` is donated.
        The round runs as minibatch_repeats / repeats_per_call() calls of one compiled function (one per
        lazy penalty pattern); the result does not depend on that split.
        """
        networks.level_of(resolution, self.spec)  # validates before any tracing
        return functools.partial(self._run_calls, resolution, minibatch, on_device_data)

    def microbatches(self, resolution: int, per_device: int) -> int:
        """Microbatches per device minibatch at a resolution (`StepConfig.max_microbatch_per_device`)."""
        cap = dict(self.config.max_microbatch_per_device).get(resolution)
        return microbatching.microbatch_count(per_device, cap, self.spec.mbstd_group_size)

    def call_fn(self, resolution: int, minibatch: int, *, on_device_data: bool = False, pattern: tuple = ()):
        """The jitted function behind `round_fn`: `repeats_per_call()` minibatch repeats in one call.

        Takes round_fn's arguments (without round_index) plus `first_repeat` (int32 scalar, the round's
        repeat index the call starts at) and returns (state, metric_sums of its repeats). `pattern` is
        the call's lazy penalty pattern (`penalty_pattern`). Jitted once per (resolution, minibatch,
        data placement, pattern); `.lower(...).compile()` gives XLA's cost and memory analyses.
        """
        cache_key = (resolution, minibatch, on_device_data, pattern)
        if cache_key not in self._rounds:
            per_call = self.repeats_per_call()
            if on_device_data:
                per_device = functools.partial(self._call_from_level, resolution, minibatch, per_call, pattern)
                in_specs = (P(),) * 10
            else:
                per_device = functools.partial(self._call_from_batches, resolution, per_call, pattern)
                batch = P(None, parallel.DATA_AXIS)
                in_specs = (P(), batch, batch, P(), P(), P(), P(), P(), P())
            sharded = jax.shard_map(per_device, mesh=self.mesh, in_specs=in_specs, out_specs=(P(), P()))
            self._rounds[cache_key] = jax.jit(sharded, donate_argnums=0, compiler_options=self._compiler_options())
        return self._rounds[cache_key]

    def _compiler_options(self) -> dict | None:
        """XLA options of the step: bfloat16 steps keep bfloat16 rounding exactly where the program has it.

        With XLA's default excess precision, fusions may skip bf16 round trips in some recomputations of
        a value but not others; `layers.leaky_relu`'s gradient (jnp.maximum's, which compares its input
        with its output) then finds them unequal and drops most of the gradient. Measured on XLA:CPU:
        D's input-gradient norm 2.5x too small at 8x8 (tests/test_benchmark.py).
        """
        return {"xla_allow_excess_precision": False} if self.spec.compute_dtype == "bfloat16" else None

    def _run_calls(self, resolution, minibatch, on_device_data, state, *args, round_index: int = 0):
        """Runs a round as consecutive calls, each starting at its first repeat index; sums the metrics."""
        total, per_call = None, self.repeats_per_call()
        for first_repeat in range(0, self.config.minibatch_repeats, per_call):
            pattern = self.penalty_pattern(round_index, first_repeat, per_call)
            compiled = self.call_fn(resolution, minibatch, on_device_data=on_device_data, pattern=pattern)
            state, sums = compiled(state, *args, jnp.int32(first_repeat))
            total = sums if total is None else jax.tree.map(jnp.add, total, sums)
        return state, total

    def _generator(self, params):
        return nnx.merge(self.g_def, params)

    def _critic(self, params, vectors, resolution, alpha):
        """D as a function images -> [N, 1 + label_size], with the configured normalization."""
        if self.spectral is not None:
            params = self.spectral.normalize(params, vectors)
        d = nnx.merge(self.d_def, params)
        critic = lambda images: d(images, resolution=resolution, alpha=alpha)  # noqa: E731
        norm = self.config.normalization
        return normalization.gran(critic, norm.gran_k, norm.gran_epsilon) if norm.method == "gran" else critic

    def _adam_if_finite(self, adam, params, opt_state, grads, lr):
        """Adam step, skipped entirely (params and moments kept) if any gradient is non-finite."""
        finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        updates, new_opt = adam.update(grads, opt_state, params)
        new_params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        return jax.tree.map(keep, new_params, params), jax.tree.map(keep, new_opt, opt_state), ~finite

    def _labels_onehot(self, labels):
        if self.spec.label_size == 0:
            return None
        return jax.nn.one_hot(labels, self.spec.label_size, dtype=jnp.float32)

    def _d_inputs(self, state, images, labels, alpha, key, resolution):
        """(reals, fakes, mix, onehot) of one D step: faded (mirrored) reals, G's fakes, interpolation factors."""
        cfg, spec = self.config, self.spec
        sample_ids = parallel.local_sample_ids(images.shape[0])
        reals = augment.to_float(images)
        if cfg.mirror_augment:
            flip = _per_sample(jax.random.fold_in(key, _FLIP), sample_ids, lambda k: jax.random.bernoulli(k))
            reals = augment.mirror(reals, flip)
        reals = layers.fade_images(reals, alpha)
        latents = _per_sample(jax.random.fold_in(key, _LATENT_D), sample_ids,
                              lambda k: jax.random.normal(k, (spec.latent_size,)))
        mix = _per_sample(jax.random.fold_in(key, _MIX), sample_ids, lambda k: jax.random.uniform(k))
        onehot = self._labels_onehot(labels)
        fakes = self._generator(state["generator"])(latents, onehot, resolution=resolution, alpha=alpha)
        return reals, jax.lax.stop_gradient(fakes), mix, onehot

    def _mean_over_microbatches(self, loss_and_grads, batch, resolution):
        """loss_and_grads(batch) of a device batch, run as `microbatches(resolution, rows)` microbatches."""
        rows = jax.tree.leaves(batch)[0].shape[0]
        group = microbatching.stddev_group(rows, self.spec.mbstd_group_size)
        return microbatching.mean_over_microbatches(loss_and_grads, batch, self.microbatches(resolution, rows), group)

    def _d_update(self, state, vectors, loss_of_critic, batch, d_lr, resolution, alpha):
        """One D optimizer step on the all-device mean of loss_of_critic(critic, batch) -> (loss, aux).

        batch: a tuple of this device's per-row arrays (None entries allowed), run as microbatches where
        `StepConfig.max_microbatch_per_device` asks for them.
        """
        def loss_and_grads(microbatch):
            def loss_fn(d_params):
                critic = self._critic(d_params, vectors, resolution, alpha)
                return jax.lax.pmean(loss_of_critic(critic, microbatch), parallel.DATA_AXIS)

            # The parameters are replicated (device-invariant), so differentiating the all-device mean
            # loss yields the all-device mean gradient: shard_map's transpose inserts the psum.
            return jax.value_and_grad(loss_fn, has_aux=True)(state["discriminator"])

        (loss, aux), grads = self._mean_over_microbatches(loss_and_grads, batch, resolution)
        d_params, d_opt, skipped = self._adam_if_finite(self.d_adam, state["discriminator"], state["optimizers"]["d"],
                                                        grads, d_lr * self.loss.adam_correction)
        state = {**state, "discriminator": d_params, "optimizers": {**state["optimizers"], "d": d_opt}}
        return state, loss, aux, skipped

    def _d_step(self, state, inputs, d_lr, ema_beta, resolution, alpha):
        vectors = state.get(normalization.STATE_ITEM)
        if self.spectral is not None:  # one power-iteration update per D step, before the loss
            vectors = self.spectral.update_vectors(state["discriminator"], vectors, self.config.normalization.power_iterations)
            state = {**state, normalization.STATE_ITEM: vectors}
        lazy = self.loss.lazy
        state, loss, aux, skipped = self._d_update(
            state, vectors, lambda critic, batch: losses.discriminator_loss(self.loss, critic, *batch, penalties=not lazy),
            inputs, d_lr, resolution, alpha)
        ema = jax.tree.map(lambda g, e: g + (e - g) * ema_beta, state["generator"], state["generator_ema"])
        penalty_steps = jnp.float32(0 if lazy or not self.loss.has_gradient_penalty else 1)
        metrics = {"d_loss": loss, **aux, "d_steps": jnp.float32(1), "penalty_steps": penalty_steps}
        return {**state, "generator_ema": ema}, metrics, skipped

    def _penalty_step(self, state, inputs, d_lr, resolution, alpha):
        """Lazy regularization: a D optimizer step on reg_interval * (gradient penalties) alone."""
        reals, fakes, mix, _ = inputs
        state, _, aux, skipped = self._d_update(
            state, state.get(normalization.STATE_ITEM), lambda critic, batch: losses.penalty_loss(self.loss, critic, *batch),
            (reals, fakes, mix), d_lr, resolution, alpha)
        return state, {**aux, "penalty_steps": jnp.float32(1)}, skipped

    def _g_step(self, state, local_batch, alpha, g_lr, key, resolution):
        spec = self.spec
        sample_ids = parallel.local_sample_ids(local_batch)
        latents = _per_sample(jax.random.fold_in(key, _LATENT_G), sample_ids,
                              lambda k: jax.random.normal(k, (spec.latent_size,)))
        onehot = None
        if spec.label_size:
            log_probs = jnp.log(jnp.asarray(self.config.label_probs, jnp.float32))
            labels = _per_sample(jax.random.fold_in(key, _LABEL_G), sample_ids,
                                 lambda k: jax.random.categorical(k, log_probs))
            onehot = self._labels_onehot(labels)
        critic = self._critic(state["discriminator"], state.get(normalization.STATE_ITEM), resolution, alpha)

        def loss_and_grads(batch):  # one microbatch of (latents, onehot)
            latents, onehot = batch

            def loss_fn(g_params):
                fakes = self._generator(g_params)(latents, onehot, resolution=resolution, alpha=alpha)
                return jax.lax.pmean(losses.generator_loss(self.loss, critic, fakes, onehot), parallel.DATA_AXIS)

            return jax.value_and_grad(loss_fn)(state["generator"])

        loss, grads = self._mean_over_microbatches(loss_and_grads, (latents, onehot), resolution)
        g_params, g_opt, skipped = self._adam_if_finite(self.g_adam, state["generator"], state["optimizers"]["g"],
                                                        grads, g_lr)
        state = {**state, "generator": g_params, "optimizers": {**state["optimizers"], "g": g_opt}}
        return state, loss, skipped

    def _call_from_batches(self, resolution, per_call, pattern, state, images, labels, *scalars):
        def fetch(d_step):  # this device's rows of the round's stacked host batches
            return images[d_step], labels[d_step]

        return self._repeats(resolution, fetch, images.shape[1], per_call, pattern, state, *scalars)

    def _call_from_level(self, resolution, minibatch, per_call, pattern, state, level_images, level_labels, position,
                         *scalars):
        local_batch = minibatch // jax.lax.axis_size(parallel.DATA_AXIS)
        sample_ids = parallel.local_sample_ids(local_batch).astype(jnp.uint32)

        def fetch(d_step):  # gathered on the device from the held level, in the host pipeline's order
            positions = position + d_step.astype(jnp.uint32) * jnp.uint32(minibatch) + sample_ids
            return device_dataset.sample_examples(level_images, level_labels, self.config.data_seed, positions)

        return self._repeats(resolution, fetch, local_batch, per_call, pattern, state, *scalars)

    def _repeats(self, resolution, fetch, local_batch, count, pattern, state, alpha, g_lr, d_lr, ema_beta, key,
                 first_repeat):
        """`count` repeats of (d_repeats D steps + g_repeats G steps) from repeat index `first_repeat`.

        fetch(d_step) -> this device's (uint8 images, labels) of the round's D step d_step. pattern[i]:
        a lazy penalty step follows the call's i-th D step. The repeats are traced as straight-line
        code, not a `lax.scan`: XLA:CPU ran the scanned step 30x slower (even unrolled). Keys depend on
        the repeat index only.
        """
        d_repeats, g_repeats = self.config.d_repeats, self.config.g_repeats

        def add(sums, metrics):
            return {**sums, **{k: sums[k] + v for k, v in metrics.items()}}

        def one_repeat(state, sums, i):
            repeat_index = first_repeat + i
            step_key = jax.random.fold_in(key, repeat_index)
            d_skipped = g_skipped = jnp.int32(0)
            for j in range(d_repeats):
                images, labels = fetch(repeat_index * d_repeats + j)
                inputs = self._d_inputs(state, images, labels, alpha, jax.random.fold_in(step_key, j), resolution)
                state, metrics, skipped = self._d_step(state, inputs, d_lr, ema_beta, resolution, alpha)
                sums, d_skipped = add(sums, metrics), d_skipped + skipped.astype(jnp.int32)
                if pattern and pattern[i * d_repeats + j]:
                    state, metrics, skipped = self._penalty_step(state, inputs, d_lr, resolution, alpha)
                    sums, d_skipped = add(sums, metrics), d_skipped + skipped.astype(jnp.int32)
            for j in range(g_repeats):
                state, g_loss, skipped = self._g_step(state, local_batch, alpha, g_lr,
                                                      jax.random.fold_in(step_key, d_repeats + j), resolution)
                sums = add(sums, {"g_loss": g_loss, "g_steps": jnp.float32(1)})
                g_skipped += skipped.astype(jnp.int32)
            counters = state["counters"]
            counters = {
                "consecutive_nonfinite": jnp.where(d_skipped + g_skipped > 0, counters["consecutive_nonfinite"] + 1, 0),
                "skipped_d": counters["skipped_d"] + d_skipped,
                "skipped_g": counters["skipped_g"] + g_skipped,
            }
            sums = add(sums, {"skipped_d": d_skipped, "skipped_g": g_skipped})
            return {**state, "counters": counters}, sums

        def bounded_repeat(state, sums, i):
            """one_repeat, or no change once the non-finite streak has reached the limit."""
            limit = self.config.max_consecutive_nonfinite
            if not limit:
                return one_repeat(state, sums, i)
            running = state["counters"]["consecutive_nonfinite"] < limit
            return jax.tree.map(lambda new, old: jnp.where(running, new, old), one_repeat(state, sums, i),
                                (state, sums))

        sums = {name: jnp.float32(0) for name in (*METRIC_NAMES, *COUNT_NAMES)}
        for i in range(count):
            state, sums = bounded_repeat(state, sums, i)
        return state, sums
