"""Metrics during training: the EMA generator evaluated at the end of every resolution stage and every N kimg.

The config's `metrics` section (`pggan.training.config.MetricsConfig`) chooses the metrics and when they
run; `pggan.evaluation` does the work, with the same protocol, real-statistics cache and records as
tools/evaluate.py. Results go to the log, to TensorBoard (`metrics/<name>`, step = images shown) and to
WORKDIR/metrics.jsonl (source 'training').

Multi-process runs: every process evaluates on its own devices with identical inputs (the EMA
parameters are replicated, latents and real subsets are seeded), so no process waits for another;
only process 0 writes.
"""

from __future__ import annotations

import time

import jax
from absl import logging
from jax.sharding import Mesh

from pggan import evaluation, parallel
from pggan.data.dataset import PreparedDataset
from pggan.image_sets import metric_resolution
from pggan.metrics import MetricError
from pggan.model import networks
from pggan.training.config import MetricsConfig
from pggan.training.train_state import Progress
from pggan.training.writers import RunWriter


class TrainingMetrics:
    """Decides when to evaluate the EMA generator during training, and reports the results.

    Args:
      config: the `metrics` section of the training config.
      spec: the model.
      dataset: the run's prepared dataset.
      workdir: where metrics.jsonl goes.
      writer: the run's TensorBoard writer (a no-op on processes other than 0).
      mesh: the training mesh; evaluation uses this process's devices of it.
    """

    def __init__(
        self,
        config: MetricsConfig,
        spec: networks.ModelSpec,
        dataset: PreparedDataset,
        workdir: str,
        writer: RunWriter,
        mesh: Mesh,
    ):
        names = config.names
        self.at_stage_end = bool(names) and config.at_stage_end
        self.every_nimg = int(round(config.every_kimg * 1000)) if names else 0
        self.workdir, self.writer = workdir, writer
        self.seconds = 0.0  # wall time spent evaluating, excluded from the training speed
        self._last_nimg = None
        self._evaluator = None
        if self.at_stage_end or self.every_nimg:
            local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
            self._evaluator = evaluation.Evaluator(
                dataset,
                names,
                num_images=config.num_images,
                batch_size=config.batch_size,
                seed=config.seed,
                inception_weights_path=config.inception_weights or None,
                mesh=parallel.make_mesh(local),
            )
            if self._evaluator.note:
                logging.warning("Training metrics: %s", self._evaluator.note)
            self._abstract_generator = networks.abstract_generator(spec)

    def due(self, previous_nimg: int, nimg: int) -> bool:
        """Whether the last round crossed a multiple of `metrics.every_kimg` (False when that is off)."""
        return bool(self.every_nimg) and previous_nimg // self.every_nimg < nimg // self.every_nimg

    def evaluate(self, generator_ema: dict, progress: Progress) -> None:
        """Evaluates the EMA parameters at the last round's resolution and alpha (once per nimg).

        generator_ema: the parameter tree (replicated arrays); progress: the run's progress.
        """
        nimg = progress.nimg
        if self._evaluator is None or nimg == self._last_nimg:
            return
        self._last_nimg = nimg
        start = time.time()
        resolution, alpha = progress.phase.resolution, progress.phase.alpha
        generator = networks.merge_parameters(self._abstract_generator, parallel.local_copy(generator_ema))
        try:
            result = self._evaluator.evaluate(generator, resolution, alpha)
        except MetricError as error:  # e.g. a collapsed generator's constant images: training goes on
            logging.warning("Metrics at %.1f kimg could not be computed: %s", nimg / 1000, error)
            result = None
        seconds = time.time() - start
        self.seconds += seconds
        if result is None:
            return
        scores = result.scores
        record = evaluation.evaluation_record(
            result=result,
            seconds=seconds,
            source="training",
            reals=self._evaluator.reals_name,
            step=nimg,
            resolution=resolution,
            alpha=alpha,
            network="ema",
        )
        upscaled = metric_resolution(resolution)
        note = f", upscaled to {upscaled}x{upscaled}" if upscaled != resolution else ""
        logging.info(
            "Metrics at %.1f kimg (%dx%d%s, alpha %.3f, %d images, %.1f s): %s",
            nimg / 1000,
            resolution,
            resolution,
            note,
            alpha,
            self._evaluator.num_images,
            seconds,
            evaluation.format_scores(scores),
        )
        self.writer.scalars(nimg, scores, prefix="metrics")
        if jax.process_index() == 0:
            evaluation.append_record(self.workdir, record)
