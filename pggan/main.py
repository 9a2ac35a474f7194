"""Trains a progressive GAN: `python -m pggan.main --config=configs/quickstart.py --workdir=runs/quickstart`.

Running the same command again resumes from the workdir's latest checkpoint. Any config field can
be overridden on the command line, e.g. `--config.schedule.total_kimg=100 --config.seed=1`.
On a multi-host TPU VM or GPU cluster, add `--multihost` and start the same command on every host.
"""

from __future__ import annotations

import logging as python_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None,
    "Path to a recipe file in configs/ (a Python file with get_config()). Override any field with "
    "--config.<field>=<value>, e.g. --config.schedule.total_kimg=100.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None,
    "Directory of the run: checkpoints, samples, TensorBoard logs. If it holds checkpoints, training "
    "resumes from the latest one.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False,
    "Start JAX's multi-process runtime first (TPU VM pods, several GPU hosts): every host runs the same "
    "command. On TPU VMs and under SLURM the coordinator and process ids are detected; elsewhere give "
    "--coordinator_address, --num_processes and --process_id.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 for --multihost (default: detected, or "
                                   "$JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes for --multihost.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(python_logging.Filter):
    """Drops INFO records of Orbax (it logs every stage of every checkpoint save) unless -v is given."""

    def filter(self, record: python_logging.LogRecord) -> bool:
        return record.levelno >= python_logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


def _start_multihost() -> None:
    import jax

    # CPU-only clusters (and tests) need a collectives backend; GPUs and TPUs ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
        logging.get_absl_handler().addFilter(_QuietLibraries())
    if _MULTIHOST.value:
        _start_multihost()
    # Imported after jax.distributed.initialize: the trainer touches the devices.
    from pggan import compilation_cache, train
    from pggan.checkpoint import CheckpointError
    from pggan.data.errors import DataError
    from pggan.validation import ConfigError

    compilation_cache.enable(_CONFIG.value.compilation_cache_dir)
    try:
        train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except (ConfigError, DataError, CheckpointError, train.TrainingError) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
