"""The training loop: schedule -> input pipeline -> compiled rounds -> ticks (logs, samples, checkpoints).

`train_and_evaluate(config, workdir)` trains from scratch or resumes from the workdir's latest
checkpoint. The loop mirrors the official `train_progressive_gan`: the schedule is evaluated once per
round of `minibatch_repeats` minibatches, Adam is reset whenever floor(lod) or ceil(lod) changes, and
progress is reported every tick. Everything that decides what the run computes (parameters, data
order, randomness) is a function of the seed and the number of images shown, so a resumed run
continues exactly where the checkpoint left off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from pggan import checkpoint, disk, parallel
from pggan.data import config as data_config
from pggan.data import device_dataset
from pggan.errors import UserError
from pggan.model import networks
from pggan.sampling import generation, latent_space, media
from pggan.training import eta, preemption, run_length, train_step, transfer
from pggan.training.config import TrainingConfig
from pggan.training.periodic_metrics import TrainingMetrics
from pggan.training.schedule import Phase, Schedule
from pggan.training.step_updates import HeldLevel, HostBatches, RoundScalars, StepConfig, summarize_metrics
from pggan.training.train_state import Progress, state_shapes
from pggan.training.validation import RunPlan, check_workdir, known_failures, plan_run
from pggan.training.writers import RunWriter


class TrainingError(UserError):
    """The run cannot continue; the message says why and what to do."""


# Room for the TensorBoard events and metrics.jsonl lines written between checkpoints.
LOG_BYTES = 64 * 1024
# What a stop by config.schedule.max_train_seconds is called in the log.
TIME_LIMIT = "the time limit (config.schedule.max_train_seconds)"
# A progress line at least this often, and at the end of every stage, whatever the tick length.
MAX_SECONDS_BETWEEN_LINES = 60.0


@dataclasses.dataclass
class _Inputs:
    """Real images of one (resolution, minibatch) stage: a level held on the devices or a host iterator."""

    resolution: int
    minibatch: int
    level: device_dataset.DeviceLevel | None = None
    iterator: Any = None

    def close(self) -> None:
        if self.iterator is not None:
            self.iterator.close()


class Trainer:
    """One training run of a checked `RunPlan` in one workdir."""

    def __init__(self, plan: RunPlan, workdir: str):
        config = self.config = plan.config
        self.workdir = os.path.abspath(os.path.expanduser(workdir))
        self.mesh, self.schedule = plan.mesh, plan.schedule
        self.num_devices = self.mesh.size
        self.spec, self.loss_config = config.model, config.loss
        self.total_nimg = int(round(self.schedule.total_kimg * 1000))
        self.last_saved_nimg: int | None = None  # the step of the newest checkpoint this run wrote or resumed from
        checkpoint_bytes, other_bytes = self._space_needed()
        self.space_needed = checkpoint_bytes + other_bytes
        check_workdir(
            self.workdir,
            self.space_needed,
            f"the next checkpoint ({disk.format_bytes(checkpoint_bytes)}, written beside the ones kept) with "
            f"samples and logs ({disk.format_bytes(other_bytes)})",
        )
        # Process 0 prepares a missing dataset; the others open it afterwards (or prepare their own
        # copy when every host has its own data_dir).
        self.dataset = parallel.process_zero_first(
            lambda: data_config.open_from_config(
                config.dataset,
                resolution=self.spec.resolution,
                channels=self.spec.num_channels,
                label_size=self.spec.label_size,
            ),
            TrainingError(
                "process 0 could not open the dataset (its error says why); fix that and restart all processes"
            ),
        )
        label_probs = tuple(self.dataset.label_probabilities()) if self.spec.label_size else None
        step_config = StepConfig.from_config(config, self.schedule, label_probs)
        self.normalization = step_config.normalization
        for warning in known_failures(self.loss_config, self.normalization):
            logging.warning(warning)
        self.step = train_step.TrainStep.create(self.spec, self.loss_config, step_config, self.mesh)
        self.store = checkpoint.CheckpointStore(
            self.workdir, keep=config.checkpoint.keep, async_save=config.checkpoint.async_save
        )
        self.writer = RunWriter(self.workdir, enabled=jax.process_index() == 0)
        self.metrics = TrainingMetrics(config.metrics, self.spec, self.dataset, self.workdir, self.writer, self.mesh)
        rows, cols = config.samples.grid_shape(self.spec.resolution)
        self.grid_rows, self.grid_cols = rows, cols
        self.grid_latents = latent_space.grid_latents(config.seed, rows * cols, self.spec.latent_size)
        self.grid_labels = None
        if self.spec.label_size:
            classes = np.arange(rows * cols) % self.spec.label_size
            self.grid_labels = latent_space.one_hot_labels(classes, self.spec.label_size)
        self.abstract_generator = networks.abstract_generator(self.spec)
        self._stack = jax.jit(lambda xs: jnp.stack(xs), out_shardings=parallel.batch_sharded(self.mesh, 1))
        self.remaining = eta.RemainingTime(self.spec, run_length.images_per_resolution(self.schedule))
        self.started_training = False  # whether a round has run: a start refused before leaves no workdir
        self.current_phase: Phase | None = None  # the phase of the round running now

    def _space_needed(self) -> tuple[int, int]:
        """(bytes of a checkpoint on the workdir's disk, bytes of the samples and logs written until the next one).

        The samples: a grid PNG and its TensorBoard copy, at most their raw pixels each; the logs: the
        events and metrics.jsonl lines of a few ticks (LOG_BYTES).
        """
        spectral = self.config.d_normalization.method == "spectral"
        shapes = state_shapes(self.spec, spectral, self.config.optimizer, self.config.augment)
        rows, cols = self.config.samples.grid_shape(self.spec.resolution)
        grid = rows * cols * self.spec.resolution**2 * self.spec.num_channels
        return checkpoint.disk_bytes(shapes, disk.block_size(self.workdir)), 2 * grid + LOG_BYTES

    # ------------------------------------------------------------------------------------ state I/O

    def _restore_or_init(self) -> tuple[dict, Progress]:
        """(state, progress) of the newest intact checkpoint, or of a new run."""
        logging.info("Plan: %s.", self.schedule.plan_text())
        shortfall = self.schedule.shortfall()
        if shortfall:
            logging.warning("Schedule: %s.", shortfall)
        restored = self.store.restore_newest(self.step.abstract_state(), self._check_resumable)
        if restored is None:
            logging.info(
                "Starting a new run in %s (%d devices, %d processes). Initialising the networks (compiled "
                "once per architecture; up to a minute on a CPU)...",
                self.workdir,
                self.num_devices,
                jax.process_count(),
            )
            self.writer.write_config(self.config)
            start = time.time()
            state = jax.block_until_ready(transfer.start_from(self.config, self.step.init_state(self.config.seed)))
            logging.info("Networks initialised in %.1f s.", time.time() - start)
            return state, Progress()
        step, state, meta = restored
        progress = Progress.from_meta(meta)
        logging.info(
            "Resuming from checkpoint %d (%.1f kimg, resolution %d) in %s (%d devices, %d processes).",
            step,
            progress.nimg / 1000,
            progress.phase.resolution,
            self.workdir,
            self.num_devices,
            jax.process_count(),
        )
        self.last_saved_nimg = progress.nimg
        return state, progress

    def _check_resumable(self, meta: dict) -> None:
        saved = json.loads(meta["config"])
        saved_architecture = networks.ModelSpec.from_config(saved["model"]).architecture()
        saved_normalization = saved.get("d_normalization", {}).get("method", "none")
        for field, before, now in (
            ("model", saved_architecture, self.spec.architecture()),
            ("seed", saved["seed"], self.config.seed),
            ("optimizer.name", saved.get("optimizer", {}).get("name", "adam"), self.config.optimizer.name),
            ("augment.target > 0", saved.get("augment", {}).get("target", 0.0) > 0, self.config.augment.adaptive),
            ("d_normalization.method", saved_normalization, self.normalization.method),
        ):
            if before != now:
                raise TrainingError(
                    f"{self.workdir} holds a run with a different config.{field} "
                    f"({before} vs {now}); use a new --workdir or the original config"
                )

    def _save(self, state: dict, progress: Progress) -> None:
        """Checkpoints the state after the last round (no-op if nothing changed since the last save).

        A state that ends its resolution stage (the next round trains at another resolution, or
        training is complete) is kept for good. While the latest steps had non-finite gradients the
        state may have diverged: it is never checkpointed, so that the newest checkpoint stays the
        last good one, and at the end of training that ends the run with a TrainingError.
        """
        if self.last_saved_nimg == progress.nimg or progress.phase is None:
            return
        consecutive = self._nonfinite_streak(state["counters"]["consecutive_nonfinite"])
        if consecutive and progress.nimg >= self.total_nimg:
            raise self._diverged(
                f"training reached {self.total_nimg / 1000:g} kimg with its last {consecutive} steps "
                "skipped for non-finite gradients, so its final state was not checkpointed"
            )
        if consecutive:
            logging.warning(
                "No checkpoint at %.1f kimg: the last %d steps had non-finite gradients; the newest "
                "checkpoint stays the one at %s.",
                progress.nimg / 1000,
                consecutive,
                "none" if self.last_saved_nimg is None else f"{self.last_saved_nimg / 1000:.1f} kimg",
            )
            return
        stage_final = (
            progress.nimg >= self.total_nimg or self.schedule.at(progress.nimg).resolution != progress.phase.resolution
        )
        self.store.save(progress.nimg, state, progress.to_meta(self.config), stage_final=stage_final)
        self.last_saved_nimg = progress.nimg
        resolution = progress.phase.resolution
        logging.info(
            "Checkpoint at %.1f kimg%s.",
            progress.nimg / 1000,
            f" (last of the {resolution}x{resolution} stage, kept)" if stage_final else "",
        )
        if stage_final and self.metrics.at_stage_end:
            self.metrics.evaluate(state["generator_ema"], progress)

    # ------------------------------------------------------------------------------------- the loop

    def run(self) -> None:
        """Trains to the end of the schedule or until a stop request (SIGTERM, Ctrl-C).

        Raises TrainingError (one line) when the run diverged (see `_nonfinite_streak`, `_save`), cannot
        be resumed, or finds its disk full (checkpoint, sample, event or metrics writes); the checkpoint
        saves in flight are completed first.
        """
        with self._reporting_a_full_disk():
            try:
                progress, stop = self._train()
            except Exception as error:
                self._close(error)
                if is_out_of_memory(error):
                    raise TrainingError(self._out_of_memory_message()) from None
                raise
            self._close()
        if stop.requested:
            saved = self.last_saved_nimg
            logging.info(
                "Stopped by %s at %.1f kimg; %s. Run the same command again to resume%s.",
                stop.signal_name,
                progress.nimg / 1000,
                "no checkpoint yet" if saved is None else f"checkpoint {saved} ({saved / 1000:.1f} kimg) is complete",
                " (with a higher limit)" if stop.signal_name == TIME_LIMIT else "",
            )
        else:
            logging.info(
                "Training complete: %.1f kimg in %s. Checkpoints in %s.",
                progress.nimg / 1000,
                _format_duration(progress.elapsed_sec),
                self.store.directory,
            )

    @contextlib.contextmanager
    def _reporting_a_full_disk(self) -> Iterator[None]:
        """Turns an error of a full disk into a one-line TrainingError: the workdir, the space it needs,
        what to do."""
        try:
            yield
        except Exception as error:
            if not disk.is_disk_full(error):
                raise
            free, needed = disk.format_bytes(disk.free_bytes(self.workdir)), disk.format_bytes(self.space_needed)
            raise TrainingError(
                f"no space left on the disk of --workdir {self.workdir} ({free} free; the next "
                f"checkpoint, samples and logs need about {needed}): free space or move the run, then "
                "run the same command to resume from the newest complete checkpoint"
            ) from None

    def _out_of_memory_message(self) -> str:
        """The one-line answer to a device out of memory: where, and the two settings that lower the memory."""
        phase = self.current_phase
        where = (
            ""
            if phase is None
            else (
                f" at {phase.resolution}x{phase.resolution}, minibatch {phase.minibatch} "
                f"({phase.minibatch // self.num_devices} per device)"
            )
        )
        resolution = "R" if phase is None else phase.resolution
        return (
            f"the devices ran out of memory{where}: run each device's minibatch in smaller pieces with "
            f"--config.schedule.max_microbatch_per_device='{{{resolution}: 4}}' (same result, less memory), or "
            f"lower the minibatch with --config.schedule.minibatch='{{{resolution}: 8}}'; then run the same "
            "command to resume"
        )

    def _close(self, error: Exception | None = None) -> None:
        """Completes the checkpoint saves in flight and closes the writers.

        After the run ended with `error`, errors of a full disk (which repeat it) are dropped.
        """
        for close in (self.store.close, self.writer.close):
            try:
                close()
            except Exception as close_error:
                if error is None or not disk.is_disk_full(close_error):
                    raise

    def _train(self) -> tuple[Progress, preemption.StopRequest]:
        """The loop of rounds, ticks and checkpoints; returns (progress, the stop request) at its end."""
        inputs, sums, streak = None, None, None
        with preemption.StopRequest(self.mesh) as stop:
            state, progress = self._restore_or_init()
            run_start = time.time()
            line = _LineWindow(progress.nimg, self.metrics.seconds)
            elapsed_at_start = progress.elapsed_sec
            if 0 < self.config.schedule.max_train_seconds <= elapsed_at_start:
                stop.request(TIME_LIMIT)  # resumed with its time already spent: saves nothing new
            while progress.nimg < self.total_nimg and not stop.requested:
                phase = self.current_phase = self.schedule.at(progress.nimg)
                last = progress.phase
                if last is not None and phase.resolution != last.resolution:
                    self._save(state, progress)  # the last state of the stage, kept for good
                new_stage = inputs is None or (inputs.resolution, inputs.minibatch) != (
                    phase.resolution,
                    phase.minibatch,
                )
                if new_stage:
                    if inputs is not None:
                        inputs.close()
                    inputs = self._start_inputs(phase, progress.nimg)
                if Schedule.crosses_lod_boundary(None if last is None else last.lod, phase.lod):
                    state = self.step.reset_optimizers(state)
                round_start = time.time()
                self.started_training = True
                state, round_sums = self._run_round(state, inputs, phase, progress)
                if new_stage:  # the first round of a stage compiles its step: said, and left out of the speed
                    jax.block_until_ready(state)
                    self._compiled(phase, time.time() - round_start)
                progress.elapsed_sec = elapsed_at_start + time.time() - run_start
                if 0 < self.config.schedule.max_train_seconds <= progress.elapsed_sec:
                    stop.request(TIME_LIMIT)
                stop.after_round()
                streak = self._watch_streak(streak, state)
                sums = round_sums if sums is None else jax.tree.map(jnp.add, sums, round_sums)
                previous_nimg = progress.nimg
                progress.nimg += phase.minibatch * self.schedule.d_steps_per_round
                progress.round += 1
                progress.phase = phase
                if new_stage:  # the stage change (checkpoint, data, grids, compile) stays out of the speed
                    line.restart_speed(progress.nimg, self.metrics.seconds)
                if self.metrics.due(previous_nimg, progress.nimg):
                    self.metrics.evaluate(state["generator_ema"], progress)
                done = progress.nimg >= self.total_nimg
                tick_due = progress.nimg >= progress.tick_start_nimg + phase.tick_kimg * 1000 or done or stop.requested
                stage_ends = not done and self.schedule.at(progress.nimg).resolution != phase.resolution
                if tick_due or stage_ends or time.time() - line.start_time >= MAX_SECONDS_BETWEEN_LINES:
                    images, seconds = line.speed(progress.nimg, self.metrics.seconds)
                    self.remaining.add_training(phase.resolution, images, seconds)
                    self._report(progress, phase, sums, images, seconds, tick_due)
                    if tick_due:
                        self._tick(state, progress, phase)
                    sums, line = None, _LineWindow(progress.nimg, self.metrics.seconds)
        if inputs is not None:
            inputs.close()
        self._save(state, progress)
        return progress, stop

    def _compiled(self, phase: Phase, seconds: float) -> None:
        """Logs and records the compile of a stage's step (its first round, which includes one round of
        training)."""
        logging.info(
            "Compiled the %dx%d training step and ran its first round in %.1f s.",
            phase.resolution,
            phase.resolution,
            seconds,
        )
        self.remaining.add_compile(seconds)
        return seconds

    def _start_inputs(self, phase, position: int) -> _Inputs:
        """The input of a (resolution, minibatch) stage: the level on the devices, or the host pipeline."""
        dataset_config = self.config.dataset
        on_device = device_dataset.should_hold_on_device(
            dataset_config.on_device,
            self.dataset,
            phase.resolution,
            self.mesh,
            dataset_config.on_device_memory_fraction,
        )
        if jax.process_count() > 1:  # all processes must take the same path: on the devices only if all can
            on_device = not bool(jax.device_get(parallel.any_process(not on_device, self.mesh)))
        logging.info(
            "Resolution %dx%d, minibatch %d (%d per device), from %.1f kimg; data %s. Compiling its training step...",
            phase.resolution,
            phase.resolution,
            phase.minibatch,
            phase.minibatch // self.num_devices,
            position / 1000,
            "held on the devices" if on_device else "from the host pipeline",
        )
        self._write_reals_grid(phase.resolution, position)
        if on_device:
            return _Inputs(
                phase.resolution,
                phase.minibatch,
                level=device_dataset.load_level_to_device(self.dataset, phase.resolution, self.mesh),
            )
        iterator = data_config.iterator_from_config(
            dataset_config,
            self.dataset,
            resolution=phase.resolution,
            batch_size=phase.minibatch,
            mesh=self.mesh,
            seed=self.config.seed,
            position=position,
            row_order=parallel.device_major_order(phase.minibatch, self.num_devices),
        )
        return _Inputs(phase.resolution, phase.minibatch, iterator=iterator)

    def _run_round(self, state: dict, inputs: _Inputs, phase: Phase, progress: Progress):
        key = jax.random.fold_in(jax.random.key(self.config.seed), progress.round)
        scalars = RoundScalars(
            jnp.float32(phase.alpha), jnp.float32(phase.g_lr), jnp.float32(phase.d_lr), jnp.float32(phase.ema_beta), key
        )
        if inputs.level is not None:
            data = HeldLevel(inputs.level.images, inputs.level.labels, jnp.uint32(progress.nimg))
        else:
            batches = [next(inputs.iterator) for _ in range(self.schedule.d_steps_per_round)]
            data = HostBatches(self._stack([b["images"] for b in batches]), self._stack([b["labels"] for b in batches]))
        return self.step.round_fn(phase.resolution, phase.minibatch)(state, data, scalars, round_index=progress.round)

    # ------------------------------------------------------------------------------------ reporting

    def _report(self, progress: Progress, phase: Phase, sums, images: int, seconds: float, tick: bool) -> None:
        """The progress line and its TensorBoard scalars: losses averaged over the rounds since the last line,
        speed over their `images` and training `seconds`. A tick's line starts with 'tick N', others with
        'progress'."""
        means, skipped = summarize_metrics(sums)
        scalars = {
            **means,
            **skipped,
            "kimg": progress.nimg / 1000,
            "resolution": phase.resolution,
            "alpha": phase.alpha,
            "lod": phase.lod,
            "g_lr": phase.g_lr,
            "d_lr": phase.d_lr,
            "minibatch": phase.minibatch,
        }
        speed = "img/s        -  sec/kimg       -"  # a line right after a stage's first round: nothing measured yet
        if images > 0:
            scalars.update(img_per_sec=images / seconds, sec_per_kimg=seconds / (images / 1000))
            speed = f"img/s {scalars['img_per_sec']:8.1f}  sec/kimg {scalars['sec_per_kimg']:7.2f}"
        logging.info(
            "%-9s kimg %8.1f  res %4d  alpha %.3f  D %8.4f  G %8.4f  GP %7.4f  %s  skipped %d/%d  ETA %s",
            f"tick {progress.tick + 1}" if tick else "progress",
            scalars["kimg"],
            phase.resolution,
            phase.alpha,
            means["d_loss"],
            means["g_loss"],
            means["gradient_penalty"],
            speed,
            skipped["skipped_d"],
            skipped["skipped_g"],
            _format_duration(self.remaining.seconds_left(progress.nimg)),
        )
        self.writer.scalars(progress.nimg, scalars)

    def _tick(self, state: dict, progress: Progress, phase: Phase) -> None:
        """The end of a tick (every `tick_kimg`): the divergence check, sample grids and checkpoints by tick count."""
        progress.tick += 1
        progress.tick_start_nimg = progress.nimg
        self._nonfinite_streak(state["counters"]["consecutive_nonfinite"])
        if progress.tick % self.config.samples.every_ticks == 0 or progress.nimg >= self.total_nimg:
            self._write_fakes_grid(state, progress.nimg, phase)
        if progress.tick % self.config.checkpoint.every_ticks == 0:
            self._save(state, progress)

    def _watch_streak(self, previous: jax.Array | None, state: dict) -> jax.Array | None:
        """Checks the previous round's non-finite streak (`_nonfinite_streak`) and returns this round's.

        Read one round late, the check waits only for a round that is done or nearly (the devices
        have the next one queued); it is copied now because the next round consumes the state. The
        compiled round changes nothing once the streak reaches the limit (`StepConfig`), so the run
        stops at exactly the limit. None when there is no limit.
        """
        if not self.config.max_consecutive_nonfinite:
            return None
        if previous is not None:
            self._nonfinite_streak(previous)
        return jnp.copy(state["counters"]["consecutive_nonfinite"])

    def _nonfinite_streak(self, counter: jax.Array) -> int:
        """The number of latest consecutive steps with non-finite gradients; TrainingError at the limit."""
        consecutive = int(jax.device_get(counter))
        limit = self.config.max_consecutive_nonfinite
        if limit and consecutive >= limit:
            raise self._diverged(
                f"{consecutive} consecutive training steps had non-finite gradients and were skipped "
                f"(limit config.max_consecutive_nonfinite={limit})"
            )
        return consecutive

    def _diverged(self, what: str) -> TrainingError:
        """The one-line error of a diverged run: what happened, the last good checkpoint, what to do."""
        saved = self.last_saved_nimg
        if saved is None:
            return TrainingError(
                f"{what}; no checkpoint was written before. Lower the learning rate or check the "
                "data, then run the same command to start again"
            )
        return TrainingError(
            f"{what}; the last good checkpoint is {saved} ({saved / 1000:.1f} kimg) in "
            f"{self.store.directory}. Lower the learning rate or check the data, then run the same "
            "command to resume from it"
        )

    def _upscaled_grid(self, images: np.ndarray) -> np.ndarray:
        factor = self.spec.resolution // images.shape[1]
        images = images.repeat(factor, axis=1).repeat(factor, axis=2)
        return media.make_grid(images, self.grid_rows, self.grid_cols)

    def _write_fakes_grid(self, state, nimg: int, phase) -> None:
        if not self.writer.enabled:
            return  # process 0 writes the grid, on its own devices
        generator = networks.merge_parameters(self.abstract_generator, parallel.local_copy(state["generator_ema"]))
        images = generation.generate_images(
            generator,
            self.grid_latents,
            self.grid_labels,
            resolution=phase.resolution,
            alpha=phase.alpha,
            batch_size=self.config.samples.batch_size,
            mesh=parallel.local_mesh(self.mesh),
        )
        self.writer.image(
            nimg, "fakes", self._upscaled_grid(images), os.path.join("samples", media.sample_grid_filename(nimg / 1000))
        )

    def _write_reals_grid(self, resolution: int, nimg: int) -> None:
        """The real images of a stage, logged at the stage's first step `nimg`."""
        if not self.writer.enabled:
            return
        count = self.grid_rows * self.grid_cols
        images, _ = self.dataset.level(resolution).read(np.arange(count) % self.dataset.num_examples)
        self.writer.image(
            nimg,
            f"reals/{resolution}",
            self._upscaled_grid(images),
            os.path.join("samples", f"reals_res{resolution:04d}.png"),
        )


@dataclasses.dataclass
class _LineWindow:
    """The rounds since the last progress line, and the part of them whose speed is measured: all of them, or
    those after a stage's first round (its compile, checkpoint, data loading and grids are left out)."""

    start_nimg: int
    speed_metrics_seconds: float  # the evaluations' total time when the measured part started
    start_time: float = dataclasses.field(default_factory=time.time)
    speed_nimg: int = dataclasses.field(init=False)  # where the measured part started: the window's start ...
    speed_time: float = dataclasses.field(init=False)  # ... until `restart_speed`

    def __post_init__(self):
        self.speed_nimg, self.speed_time = self.start_nimg, self.start_time

    def restart_speed(self, nimg: int, metrics_seconds: float) -> None:
        """Measures the speed from now, at `nimg` images shown."""
        self.speed_nimg, self.speed_time, self.speed_metrics_seconds = nimg, time.time(), metrics_seconds

    def speed(self, nimg: int, metrics_seconds: float) -> tuple[int, float]:
        """(images, seconds) of the measured part up to now, at `nimg` images shown; evaluations left out."""
        evaluation = metrics_seconds - self.speed_metrics_seconds
        return nimg - self.speed_nimg, max(time.time() - self.speed_time - evaluation, 1e-9)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is XLA's RESOURCE_EXHAUSTED (a device or host allocation failed)."""
    return "RESOURCE_EXHAUSTED" in str(error) or "Out of memory" in str(error)


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


def train_and_evaluate(
    config: RunPlan | ml_collections.ConfigDict | TrainingConfig, workdir: str, devices=None
) -> None:
    """Trains (or resumes) a run in `workdir`.

    config: a checked `RunPlan` (`pggan.training.validation.plan_run`), or a config (ConfigDict or typed) that is
    planned here for `devices` (default: every device).
    Raises a `pggan.errors.UserError` (ConfigError, DataError, CheckpointError, TrainingError, ...) with a
    one-line message when the user has something to fix.
    """
    path = os.path.abspath(os.path.expanduser(workdir))
    plan = config if isinstance(config, RunPlan) else plan_run(config, devices, path)
    existed, trainer = os.path.exists(path), None
    try:
        trainer = Trainer(plan, path)
        trainer.run()
    except UserError:
        if not existed and (trainer is None or not trainer.started_training):
            shutil.rmtree(path, ignore_errors=True)  # refused before training: nothing to keep
        raise
