"""Trains a progressive GAN: `pggan-train --config=quickstart --workdir=runs/quickstart` (or `python -m pggan.main`).

Running the same command again resumes from the workdir's latest checkpoint. Any config field can
be overridden on the command line, e.g. `--config.schedule.total_kimg=100 --config.seed=1`.
On a multi-host TPU VM or GPU cluster, add `--multihost` and start the same command on every host.
"""

from __future__ import annotations

import logging as python_logging
import os
import re
import sys

from absl import app, flags, logging

from pggan import dependencies, disk

config_flags = dependencies.import_or_exit("ml_collections.config_flags", "reading recipe files (configs/*.py)")

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "A recipe: its name (quickstart, tiny, cifar10_32, celebahq_1024, ...: pggan/recipes/) or the path of a "
    "Python file with get_config(). Override any field with "
    "--config.<field>=<value>, e.g. --config.schedule.total_kimg=100.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Directory of the run: checkpoints, samples, TensorBoard logs. If it holds checkpoints, training "
    "resumes from the latest one.",
)
_MULTIHOST = flags.DEFINE_bool(
    "multihost",
    False,
    "Start JAX's multi-process runtime first (TPU VM pods, several GPU hosts): every host runs the same "
    "command. On TPU VMs and under SLURM the coordinator and process ids are detected; elsewhere give "
    "--coordinator_address, --num_processes and --process_id.",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0 for --multihost (default: detected, or $JAX_COORDINATOR_ADDRESS).",
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes for --multihost.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
_SHOW_CONFIG = flags.DEFINE_bool(
    "show_config",
    False,
    "Print every field of the config (after the recipe and the --config.* overrides) with its "
    "value and meaning, then exit. --workdir is not needed.",
)
flags.mark_flags_as_required(["config"])
flags.register_validator(
    "coordinator_address",
    lambda value: value is None or re.fullmatch(r".+:\d+", value),
    message="--coordinator_address must be HOST:PORT, e.g. 10.0.0.2:8476",
)


# Libraries whose INFO records are noise for a user: Orbax logs every stage of every checkpoint save,
# tensorflow_datasets that a prepared dataset's module name differs from the code's, and JAX that the
# TPU and other backends this machine lacks cannot be initialised.
_QUIET_INFO_OF = (f"{os.sep}orbax{os.sep}", f"{os.sep}tensorflow_datasets{os.sep}", f"{os.sep}xla_bridge.py")


# tensorboardX warns of every non-finite scalar it writes (4 lines per tick of a diverging run).
_TENSORBOARDX_NAN_WARNING_FILE = f"tensorboardX{os.sep}x2num.py"


class _QuietLibraries(python_logging.Filter):
    """Drops the INFO records of `_QUIET_INFO_OF`, and the tracebacks of a full disk that Orbax and asyncio
    (Orbax's failed background writes) log (the trainer reports that in one line), unless -v is given."""

    def filter(self, record: python_logging.LogRecord) -> bool:
        if record.levelno < python_logging.WARNING and any(part in record.pathname for part in _QUIET_INFO_OF):
            return False
        if record.pathname.endswith(_TENSORBOARDX_NAN_WARNING_FILE):
            return False  # "NaN or Inf found in input tensor", once per scalar: the progress line shows the nan
        from_orbax = f"{os.sep}orbax{os.sep}" in record.pathname
        if from_orbax or f"{os.sep}asyncio{os.sep}" in record.pathname:
            return not (record.exc_info and disk.is_disk_full(record.exc_info[1]))
        return True


def _without_closed_loop_noise(hook):
    """An unraisable-exception hook that passes everything to `hook` except "Event loop is closed" errors.

    When a background checkpoint write fails (a full disk), Orbax closes its event loop while other
    tensorstore writes are still running; their completion callbacks then raise this error in
    tensorstore's threads, which report it as unraisable. The failure itself is reported in one line
    by the trainer.
    """

    def filtered(unraisable) -> None:
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
            hook(unraisable)

    return filtered


def _start_multihost() -> None:
    import jax

    # CPU-only clusters (and tests) need a collectives backend; GPUs and TPUs ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value
    )


def _fail(message: str) -> int:
    """Prints a user error as one line (no traceback); returns the exit status 1."""
    print(f"error: {message}", file=sys.stderr)
    return 1


def _with_recipe_paths(argv: list[str]) -> list[str]:
    """argv with a recipe name in --config=NAME (or --config NAME) replaced by its file (`recipes.recipe_path`)."""
    from pggan import recipes

    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            argv[i] = "--config=" + recipes.recipe_path(arg[len("--config=") :])
        elif arg == "--config" and i + 1 < len(argv):
            argv[i + 1] = recipes.recipe_path(argv[i + 1])
    return argv


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, plus one-line errors for an unknown recipe, a missing recipe file and a
    --config.<field> override that names no field (ml_collections raises those while parsing)."""
    from pggan.errors import UserError

    try:
        return app.parse_flags_with_usage(_with_recipe_paths(argv))
    except UserError as e:
        sys.exit(_fail(str(e)))
    except OSError as e:
        sys.exit(
            _fail(
                f"--config: the recipe file cannot be loaded ({str(e).splitlines()[-1].strip()}); pass a "
                f"recipe name such as quickstart or a recipe file"
            )
        )
    except (AttributeError, KeyError) as e:
        # ml_collections' message names the field in quotes, maybe followed by 'Did you mean "x" ...?'.
        message = str(e)
        field = re.search(r"\w+", message)
        field = field.group() if field else message
        suggestion = re.search(r'Did you mean "(\w+)"', message)
        overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
        culprits = [name for name in overrides if field in name.split(".")]
        sys.exit(
            _fail(
                f"{culprits[0] if culprits else '--config'}: the config has no field {field!r}"
                f"{f' (did you mean {suggestion.group(1)!r}?)' if suggestion else ''}; check the spelling "
                f"against the recipe (pggan/recipes/) and pggan/training/defaults.py"
            )
        )


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        return _fail(f"unexpected arguments {' '.join(argv[1:])}: every setting is a --flag")
    if not flags.FLAGS["verbosity"].present:
        logging.get_absl_handler().addFilter(_QuietLibraries())
        sys.unraisablehook = _without_closed_loop_noise(sys.unraisablehook)
    if _MULTIHOST.value:
        try:
            _start_multihost()
        except (RuntimeError, ValueError) as e:
            return _fail(
                f"--multihost: JAX's multi-process runtime did not start ({str(e).splitlines()[0]}); check "
                f"--coordinator_address, --num_processes and --process_id"
            )
    # Imported after jax.distributed.initialize: they touch the devices.
    import jax

    from pggan.errors import UserError
    from pggan.training import validation
    from pggan.training.config import TrainingConfig, describe

    try:  # parsed and checked once, before importing the trainer's heavier stack
        config = TrainingConfig.parse(_CONFIG.value)
        if _SHOW_CONFIG.value:
            print("\n".join(describe(config)))
            return 0
        if not _WORKDIR.value:
            raise UserError("--workdir is required: the directory of the run (checkpoints, samples, logs)")
        plan = validation.plan_run(config, jax.devices(), os.path.abspath(os.path.expanduser(_WORKDIR.value)))
    except UserError as e:
        return _fail(str(e))
    from pggan.training import compilation_cache, loop

    compilation_cache.enable(config.compilation_cache_dir)
    try:
        loop.train_and_evaluate(plan, _WORKDIR.value)
    except UserError as e:
        return _fail(str(e))
    return 0


def run() -> None:
    """The console script `pggan-train`."""
    from pggan.cli.runner import run_program

    run_program(main, __name__, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
