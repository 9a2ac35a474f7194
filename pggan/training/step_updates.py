"""The pure functions of a training round: D step, lazy penalty step, G step, EMA, and their repeats.

Everything here is a function of arrays, written per device (it runs inside `jax.shard_map` over the
1-D 'data' mesh, see `pggan.training.train_step` which compiles it): parameters and optimizer state are
replicated, the batch is this device's rows in the strided layout of `pggan.parallel`, and gradients
are those of the all-device mean loss (pmap's `pmean` of per-device gradients). Where memory
requires it, a device runs its minibatch as microbatches of whole minibatch-stddev groups and
averages their gradients (`pggan.training.microbatching`): the same function.

Randomness is a pure function of (seed, round index, step within the round, global sample id), so
results do not depend on the device count and a resumed run repeats an uninterrupted one exactly.

The inputs of a round, by name:
  `RoundScalars`: alpha, learning rates, EMA decay and the round's PRNG key (traced: no recompile);
  the reals, as `HostBatches` (the host pipeline's stacked minibatches, split over the devices) or
  `HeldLevel` (a whole dataset level held on every device, sampled inside the step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import PartitionSpec as P

from pggan import parallel
from pggan.data import augment, device_dataset, diff_augment
from pggan.model import layers, losses, networks, normalization
from pggan.training import microbatching
from pggan.training.config import DatasetConfig, OptimizerConfig, ScheduleConfig, TrainingConfig
from pggan.training.schedule import Schedule

# Streams of per-sample randomness within one step.
_LATENT_D, _MIX, _FLIP, _LATENT_G, _LABEL_G, _AUGMENT = range(6)

METRIC_NAMES = ("d_loss", "g_loss", "real_score", "fake_score", *losses.PENALTY_METRICS, "skipped_d", "skipped_g")
# Beside them with differentiable augmentation: its probability p and, when adaptive, r_t = mean sign(D(real)).
AUGMENT_METRICS = ("augment_p", "augment_rt")
# Step counts summed beside the metrics: the divisors of their means (see `summarize_metrics`).
COUNT_NAMES = ("d_steps", "g_steps", "penalty_steps")


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static settings of the compiled step (hashable: the compiled functions are cached by it).

    optimizer: the optimizer of G and of D (`pggan.training.optimizers`; extragradient steps or not); D's
      betas get the lazy-regularization correction (`LossConfig.adam_correction`).
    normalization: D's Lipschitz constraint (none, spectral, GraN, clip; `pggan.model.normalization`).
    augment: differentiable augmentation of every image D sees (`pggan.data.diff_augment`).
    mirror_augment: random horizontal flips of reals.
    minibatch_repeats, d_repeats, g_repeats: round structure (D and G updates per repeat: TTUR counts).
    label_probs: class prior [label_size] for the G step's random labels (None if unconditional).
    data_seed: seed of the example order (used when the dataset level is held on the devices).
    repeats_per_call: minibatch repeats per compiled call (0 = automatic, see
      `TrainStep.repeats_per_call`); a speed setting that does not change the results.
    max_microbatch_per_device: ((resolution, images), ...): at these resolutions each device runs its
      minibatch as microbatches of at most that many images and accumulates the gradients
      (`pggan.training.microbatching`); a memory setting that does not change the results.
    max_consecutive_nonfinite: once this many repeats in a row had a non-finite gradient, the rest
      of the round changes nothing (the trainer then stops at exactly this count); 0 = no limit.
    cpu_ynnpack: on CPUs, compile the step with XLA's YNNPACK fusions (see `TrainStep._compiler_options`);
      a speed setting that changes results only by float32 rounding.
    Defaults are those of the training config's sections (but no limit of non-finite repeats).
    """

    optimizer: OptimizerConfig = OptimizerConfig()
    normalization: normalization.NormalizationConfig = normalization.NormalizationConfig()
    augment: diff_augment.AugmentConfig = diff_augment.AugmentConfig()
    mirror_augment: bool = DatasetConfig.mirror_augment
    minibatch_repeats: int = ScheduleConfig.minibatch_repeats
    d_repeats: int = ScheduleConfig.d_repeats
    g_repeats: int = ScheduleConfig.g_repeats
    label_probs: tuple[float, ...] | None = None
    data_seed: int = TrainingConfig.seed
    repeats_per_call: int = 0
    max_microbatch_per_device: tuple[tuple[int, int], ...] = ()
    max_consecutive_nonfinite: int = 0
    cpu_ynnpack: bool = False

    @classmethod
    def from_config(
        cls, config: TrainingConfig, schedule: Schedule, label_probs: tuple[float, ...] | None = None
    ) -> StepConfig:
        """The step settings of a typed training config and its schedule for the devices."""
        return cls(
            optimizer=config.optimizer,
            normalization=config.d_normalization,
            augment=config.augment,
            mirror_augment=config.dataset.mirror_augment,
            minibatch_repeats=schedule.config.minibatch_repeats,
            d_repeats=schedule.config.d_repeats,
            g_repeats=schedule.config.g_repeats,
            label_probs=label_probs,
            data_seed=config.seed,
            max_microbatch_per_device=tuple(sorted(schedule.config.max_microbatch_per_device.items())),
            max_consecutive_nonfinite=config.max_consecutive_nonfinite,
            cpu_ynnpack=config.cpu_ynnpack,
        )

    def microbatches(self, resolution: int, per_device: int, mbstd_group_size: int) -> int:
        """Microbatches per device minibatch at a resolution (`max_microbatch_per_device`)."""
        cap = dict(self.max_microbatch_per_device).get(resolution)
        return microbatching.microbatch_count(per_device, cap, mbstd_group_size)


class RoundScalars(NamedTuple):
    """The traced scalars of one round (changing them never recompiles).

    alpha: float32, fade-in weight of the active resolution in [0, 1]. g_lr, d_lr: float32 Adam
    learning rates. ema_beta: float32 EMA decay per D step. key: the round's PRNG key.
    """

    alpha: jax.Array
    g_lr: jax.Array
    d_lr: jax.Array
    ema_beta: jax.Array
    key: jax.Array


# A device's reals of one D step of the round: d_step (int) -> (uint8 [b, r, r, C], int32 [b]).
Fetch = Callable[[int], tuple[jax.Array, jax.Array]]


class HostBatches(NamedTuple):
    """A round's reals from the host pipeline.

    images: uint8 [S, minibatch, r, r, C] with S = minibatch_repeats * d_repeats, split over the devices
      along axis 1 in the strided layout (`parallel.device_major_order`); labels: int32 [S, minibatch]
      (ignored when unconditional), same layout.
    """

    images: jax.Array
    labels: jax.Array

    @staticmethod
    def partition_specs() -> HostBatches:
        return HostBatches(P(None, parallel.DATA_AXIS), P(None, parallel.DATA_AXIS))

    def local_batch(self, minibatch: int) -> int:
        """Rows per device (inside shard_map)."""
        del minibatch
        return self.images.shape[1]

    def fetcher(self, minibatch: int, data_seed: int) -> Fetch:
        """This device's rows of the round's stacked host batches."""
        del minibatch, data_seed
        return lambda d_step: (self.images[d_step], self.labels[d_step])


class HeldLevel(NamedTuple):
    """A round's reals sampled from a whole dataset level held on every device (`pggan.data.device_dataset`).

    images: uint8 [N, r, r, C] and labels: int32 [N], replicated; position: uint32 scalar, the stream
    position of the round's first real image. D step s reads positions position + s * minibatch +
    (global sample ids): exactly what the host pipeline would deliver.
    """

    images: jax.Array
    labels: jax.Array
    position: jax.Array

    @staticmethod
    def partition_specs() -> P:
        return P()

    def local_batch(self, minibatch: int) -> int:
        """Rows per device (inside shard_map)."""
        return minibatch // jax.lax.axis_size(parallel.DATA_AXIS)

    def fetcher(self, minibatch: int, data_seed: int) -> Fetch:
        """Gathers this device's rows on the device, in the host pipeline's order."""
        sample_ids = parallel.local_sample_ids(self.local_batch(minibatch)).astype(jnp.uint32)

        def fetch(d_step):
            positions = self.position + jnp.asarray(d_step).astype(jnp.uint32) * jnp.uint32(minibatch) + sample_ids
            return device_dataset.sample_examples(self.images, self.labels, data_seed, positions)

        return fetch


RoundData = HostBatches | HeldLevel


class DInputs(NamedTuple):
    """One D step's inputs on a device: faded (mirrored) reals and G's fakes, float [b, r, r, C];
    interpolation factors float32 [b] in [0, 1]; one-hot labels float32 [b, label_size] or None;
    augmentation parameters (`diff_augment.draw`'s, leading axis b) or None.

    Row n's real, fake and interpolate share row n's augmentation draw: the transforms are affine in
    the image, so the augmented interpolate is the interpolate of the augmented pair."""

    reals: jax.Array
    fakes: jax.Array
    mix: jax.Array
    onehot: jax.Array | None
    augment: dict | None = None


def summarize_metrics(sums: dict) -> tuple[dict[str, float], dict[str, int]]:
    """(means, skipped counts) of metric sums over any number of rounds.

    D metrics are averaged over D steps, g_loss over G steps, the PENALTY_METRICS over the steps that
    computed penalties (every D step, or the lazy penalty steps; 0 when there were none).
    """
    sums = {k: float(v) for k, v in jax.device_get(sums).items()}
    divisors = {"g_loss": "g_steps", **{name: "penalty_steps" for name in losses.PENALTY_METRICS}}
    means = {
        k: v / max(sums[divisors.get(k, "d_steps")], 1.0)
        for k, v in sums.items()
        if k not in COUNT_NAMES and not k.startswith("skipped")
    }
    return means, {k: int(v) for k, v in sums.items() if k.startswith("skipped")}


def _per_sample(key: jax.Array, sample_ids: jax.Array, fn):
    """Applies fn(key_n) for every sample with key_n = fold_in(key, global sample id n)."""
    return jax.vmap(lambda i: fn(jax.random.fold_in(key, i)))(sample_ids)


def _step(optimizer, params, opt_state, grads, lr):
    """(params - lr * u, new optimizer state) with u the optimizer's direction for `grads`."""
    updates, new_opt = optimizer.update(grads, opt_state, params)
    return jax.tree.map(lambda p, u: p - lr * u, params, updates), new_opt


def _step_if_finite(optimizer, params, opt_state, grads, lr):
    """Optimizer step, skipped entirely (params and moments kept) if any gradient is non-finite."""
    finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    new_params, new_opt = _step(optimizer, params, opt_state, grads, lr)
    keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
    return jax.tree.map(keep, new_params, params), jax.tree.map(keep, new_opt, opt_state), ~finite


class TrainingUpdates:
    """The per-device update functions of one model, loss and step configuration (pure, not jitted).

    A round is `minibatch_repeats` times { `d_repeats` x (D step + EMA update), then `g_repeats` G
    steps }, at one lod. With lazy regularization (`LossConfig.reg_interval` = k) a penalty-only D
    step follows the D steps a static `pattern` marks (see `pggan.training.train_step.TrainStep.penalty_pattern`).
    """

    def __init__(self, spec: networks.ModelSpec, loss: losses.LossConfig, config: StepConfig):
        self.spec, self.loss, self.config = spec, loss, config
        self.g_def = nnx.graphdef(networks.abstract_generator(spec))
        abstract_d = networks.abstract_discriminator(spec)
        self.d_def = nnx.graphdef(abstract_d)
        self.g_optimizer = config.optimizer.transform("g")
        self.d_optimizer = config.optimizer.transform("d", loss.adam_correction)
        self.spectral = normalization.SpectralNorm(abstract_d) if config.normalization.method == "spectral" else None

    def reset_optimizers(self, state: dict) -> dict:
        """The state with both optimizer states at their initial value (official reset at every lod boundary)."""
        optimizers = {
            "g": self.g_optimizer.init(state["generator"]),
            "d": self.d_optimizer.init(state["discriminator"]),
        }
        return {**state, "optimizers": optimizers}

    # ------------------------------------------------------------------------------------- pieces

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

    def _augment_params(self, state, key, sample_ids, resolution):
        """This device's augmentation parameters (leading axis: rows), or None when augmentation is off."""
        cfg = self.config.augment
        if not cfg.ops:
            return None
        p = state[diff_augment.STATE_ITEM]["p"] if cfg.adaptive else jnp.float32(cfg.probability)
        return _per_sample(jax.random.fold_in(key, _AUGMENT), sample_ids, lambda k: diff_augment.draw(k, p, resolution))

    def _augmented(self, critic, params):
        """The critic as it sees images augmented with `params` (None: the critic itself)."""
        return critic if params is None else diff_augment.augmented_critic(critic, params, self.config.augment.ops)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metric sums of a call (`repeats`), besides COUNT_NAMES."""
        augment = self.config.augment
        return METRIC_NAMES + (AUGMENT_METRICS if augment.adaptive else AUGMENT_METRICS[:1] if augment.ops else ())

    def _labels_onehot(self, labels):
        if self.spec.label_size == 0:
            return None
        return jax.nn.one_hot(labels, self.spec.label_size, dtype=jnp.float32)

    def _mean_over_microbatches(self, loss_and_grads, batch, resolution):
        """loss_and_grads(batch) of a device batch, run as the configured microbatches."""
        rows = jax.tree.leaves(batch)[0].shape[0]
        count = self.config.microbatches(resolution, rows, self.spec.mbstd_group_size)
        group = microbatching.stddev_group(rows, self.spec.mbstd_group_size)
        return microbatching.mean_over_microbatches(loss_and_grads, batch, count, group)

    # -------------------------------------------------------------------------------------- steps

    def d_inputs(self, state, images, labels, alpha, key, resolution) -> DInputs:
        """One D step's inputs from this device's uint8 reals [b, r, r, C] and int labels [b]."""
        cfg, spec = self.config, self.spec
        sample_ids = parallel.local_sample_ids(images.shape[0])
        reals = augment.to_float(images)
        if cfg.mirror_augment:
            flip = _per_sample(jax.random.fold_in(key, _FLIP), sample_ids, lambda k: jax.random.bernoulli(k))
            reals = augment.mirror(reals, flip)
        reals = layers.fade_images(reals, alpha)
        latents = _per_sample(
            jax.random.fold_in(key, _LATENT_D), sample_ids, lambda k: jax.random.normal(k, (spec.latent_size,))
        )
        mix = _per_sample(jax.random.fold_in(key, _MIX), sample_ids, lambda k: jax.random.uniform(k))
        onehot = self._labels_onehot(labels)
        fakes = self._generator(state["generator"])(latents, onehot, resolution=resolution, alpha=alpha)
        augment_params = self._augment_params(state, key, sample_ids, resolution)
        return DInputs(reals, jax.lax.stop_gradient(fakes), mix, onehot, augment_params)

    def _optimizer_step(self, optimizer, params, opt_state, gradients, lr, constrain=lambda params: params):
        """One optimizer step of a network -> (value, params, optimizer state, skipped).

        gradients(params) -> (value, gradient tree) at those parameters; constrain: the projection applied
        after every step (D's weight clipping). With `OptimizerConfig.extragradient` the gradient is taken
        at the lookahead point constrain(params - lr * u(g(params))) (the optimizer state is not advanced
        by the lookahead) and that gradient steps from `params`; `value` is the one at `params`.
        """
        value, grads = gradients(params)
        if self.config.optimizer.extragradient:
            lookahead, _ = _step(optimizer, params, opt_state, grads, lr)
            _, grads = gradients(constrain(lookahead))
        new_params, new_opt, skipped = _step_if_finite(optimizer, params, opt_state, grads, lr)
        return value, constrain(new_params), new_opt, skipped

    def _constrain_d(self, d_params):
        """D's parameters after an optimizer step: clipped with weight clipping, else as they are."""
        norm = self.config.normalization
        return normalization.clip_parameters(d_params, norm.clip_value) if norm.method == "clip" else d_params

    def _d_update(self, state, vectors, loss_of_critic, batch, d_lr, resolution, alpha):
        """One D optimizer step on the all-device mean of loss_of_critic(critic, batch) -> (loss, aux).

        batch: a tuple of this device's per-row arrays (None entries allowed), run as microbatches where
        `StepConfig.max_microbatch_per_device` asks for them.
        """

        def gradients(d_params):
            def loss_and_grads(microbatch):
                def loss_fn(params):
                    critic = self._critic(params, vectors, resolution, alpha)
                    return jax.lax.pmean(loss_of_critic(critic, microbatch), parallel.DATA_AXIS)

                # The parameters are replicated (device-invariant), so differentiating the all-device mean
                # loss yields the all-device mean gradient: shard_map's transpose inserts the psum.
                return jax.value_and_grad(loss_fn, has_aux=True)(d_params)

            return self._mean_over_microbatches(loss_and_grads, batch, resolution)

        (loss, aux), d_params, d_opt, skipped = self._optimizer_step(
            self.d_optimizer,
            state["discriminator"],
            state["optimizers"]["d"],
            gradients,
            d_lr * self.loss.adam_correction,
            self._constrain_d,
        )
        state = {**state, "discriminator": d_params, "optimizers": {**state["optimizers"], "d": d_opt}}
        return state, loss, aux, skipped

    def d_step(self, state, inputs: DInputs, d_lr, ema_beta, resolution, alpha):
        """D update (penalties included unless lazy), then the EMA update of G. -> (state, metrics, skipped)."""
        vectors = state.get(normalization.STATE_ITEM)
        if self.spectral is not None:  # one power-iteration update per D step, before the loss
            vectors = self.spectral.update_vectors(
                state["discriminator"], vectors, self.config.normalization.power_iterations
            )
            state = {**state, normalization.STATE_ITEM: vectors}
        lazy, augment = self.loss.lazy, self.config.augment

        def loss_of_critic(critic, batch):
            *images, params = batch
            return losses.discriminator_loss(
                self.loss, self._augmented(critic, params), *images, penalties=not lazy, real_sign=augment.adaptive
            )

        augment_metrics = {}
        if augment.ops:
            p = state[diff_augment.STATE_ITEM]["p"] if augment.adaptive else jnp.float32(augment.probability)
            augment_metrics["augment_p"] = p
        state, loss, aux, skipped = self._d_update(
            state, vectors, loss_of_critic, tuple(inputs), d_lr, resolution, alpha
        )
        if augment.adaptive:
            augment_metrics["augment_rt"] = real_sign = aux.pop("real_sign")
            minibatch = inputs.reals.shape[0] * jax.lax.axis_size(parallel.DATA_AXIS)
            state = {
                **state,
                diff_augment.STATE_ITEM: augment.update_state(state[diff_augment.STATE_ITEM], real_sign, minibatch),
            }
        ema = jax.tree.map(lambda g, e: g + (e - g) * ema_beta, state["generator"], state["generator_ema"])
        penalty_steps = jnp.float32(0 if lazy or not self.loss.has_gradient_penalty else 1)
        metrics = {"d_loss": loss, **aux, **augment_metrics, "d_steps": jnp.float32(1), "penalty_steps": penalty_steps}
        return {**state, "generator_ema": ema}, metrics, skipped

    def penalty_step(self, state, inputs: DInputs, d_lr, resolution, alpha):
        """Lazy regularization: a D optimizer step on reg_interval * (gradient penalties) alone."""
        state, _, aux, skipped = self._d_update(
            state,
            state.get(normalization.STATE_ITEM),
            lambda critic, batch: losses.penalty_loss(self.loss, self._augmented(critic, batch[3]), *batch[:3]),
            (inputs.reals, inputs.fakes, inputs.mix, inputs.augment),
            d_lr,
            resolution,
            alpha,
        )
        return state, {**aux, "penalty_steps": jnp.float32(1)}, skipped

    def g_step(self, state, local_batch, alpha, g_lr, key, resolution, reals=None):
        """G update on `local_batch` fresh latents per device (and labels from the class prior).

        reals: the MMD loss's reference batch, float [local_batch, r, r, C] (the last D step's), else None.
        """
        spec = self.spec
        sample_ids = parallel.local_sample_ids(local_batch)
        latents = _per_sample(
            jax.random.fold_in(key, _LATENT_G), sample_ids, lambda k: jax.random.normal(k, (spec.latent_size,))
        )
        onehot = None
        if spec.label_size:
            log_probs = jnp.log(jnp.asarray(self.config.label_probs, jnp.float32))
            labels = _per_sample(
                jax.random.fold_in(key, _LABEL_G), sample_ids, lambda k: jax.random.categorical(k, log_probs)
            )
            onehot = self._labels_onehot(labels)
        critic = self._critic(state["discriminator"], state.get(normalization.STATE_ITEM), resolution, alpha)
        augment_params = self._augment_params(state, key, sample_ids, resolution)

        def gradients(g_params):
            def loss_and_grads(batch):  # one microbatch of (latents, onehot, augmentation parameters, reals)
                latents, onehot, augment_rows, reals = batch
                augmented = self._augmented(critic, augment_rows)

                def loss_fn(params):
                    fakes = self._generator(params)(latents, onehot, resolution=resolution, alpha=alpha)
                    return jax.lax.pmean(
                        losses.generator_loss(self.loss, augmented, fakes, onehot, reals), parallel.DATA_AXIS
                    )

                return jax.value_and_grad(loss_fn)(g_params)

            return self._mean_over_microbatches(loss_and_grads, (latents, onehot, augment_params, reals), resolution)

        loss, g_params, g_opt, skipped = self._optimizer_step(
            self.g_optimizer, state["generator"], state["optimizers"]["g"], gradients, g_lr
        )
        state = {**state, "generator": g_params, "optimizers": {**state["optimizers"], "g": g_opt}}
        return state, loss, skipped

    # ------------------------------------------------------------------------------------ repeats

    def repeats(
        self,
        state,
        fetch: Fetch,
        local_batch: int,
        scalars: RoundScalars,
        first_repeat,
        *,
        resolution: int,
        count: int,
        pattern: tuple[bool, ...],
    ):
        """`count` repeats of (d_repeats D steps + g_repeats G steps) from repeat index `first_repeat`.

        fetch(d_step) -> this device's (uint8 images, labels) of the round's D step d_step. pattern[i]:
        a lazy penalty step follows the call's i-th D step. The repeats are traced as straight-line
        code, not a `lax.scan`: XLA:CPU ran the scanned step 30x slower (even unrolled). Keys depend on
        the repeat index only. Returns (state, float32 metric sums: METRIC_NAMES and COUNT_NAMES).
        """
        alpha, g_lr, d_lr, ema_beta, key = scalars
        d_repeats, g_repeats = self.config.d_repeats, self.config.g_repeats

        def add(sums, metrics):
            return {**sums, **{k: sums[k] + v for k, v in metrics.items()}}

        def one_repeat(state, sums, i):
            repeat_index = first_repeat + i
            step_key = jax.random.fold_in(key, repeat_index)
            d_skipped = g_skipped = jnp.int32(0)
            for j in range(d_repeats):
                images, labels = fetch(repeat_index * d_repeats + j)
                inputs = self.d_inputs(state, images, labels, alpha, jax.random.fold_in(step_key, j), resolution)
                state, metrics, skipped = self.d_step(state, inputs, d_lr, ema_beta, resolution, alpha)
                sums, d_skipped = add(sums, metrics), d_skipped + skipped.astype(jnp.int32)
                if pattern and pattern[i * d_repeats + j]:
                    state, metrics, skipped = self.penalty_step(state, inputs, d_lr, resolution, alpha)
                    sums, d_skipped = add(sums, metrics), d_skipped + skipped.astype(jnp.int32)
            reals = inputs.reals if self.loss.name == losses.MMD else None
            for j in range(g_repeats):
                state, g_loss, skipped = self.g_step(
                    state, local_batch, alpha, g_lr, jax.random.fold_in(step_key, d_repeats + j), resolution, reals
                )
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
            return jax.tree.map(
                lambda new, old: jnp.where(running, new, old), one_repeat(state, sums, i), (state, sums)
            )

        sums = {name: jnp.float32(0) for name in (*self.metric_names, *COUNT_NAMES)}
        for i in range(count):
            state, sums = bounded_repeat(state, sums, i)
        return state, sums
