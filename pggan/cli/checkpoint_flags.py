"""Pieces shared by the programs in pggan/cli: the flags that choose a run's checkpoint.

The flags live here, defined once, so that several tools can be imported into one process (tests
do that; absl refuses a flag name defined by two modules):
  --workdir     the training run's directory
  --step        an exact checkpoint (number of real images shown)
  --resolution  the last checkpoint of that resolution stage
  --network     'ema' (smoothed generator, the default) or 'raw'
  --seed        the random seed of what a tool draws
  --batch_size  images per generator step
"""

from __future__ import annotations

from absl import flags

from pggan import checkpoint
from pggan.cli.runner import UsageError
from pggan.sampling import generation

WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Directory of the training run (the --workdir given to pggan-train): its checkpoints/ and "
    "samples/ folders are read. pggan-generate, pggan-export and pggan-project also take one of its checkpoint "
    "folders, a .pggan export or an official .pkl.",
)
STEP = flags.DEFINE_integer(
    "step",
    None,
    "Use the checkpoint at this step (number of real images shown, the folder name in "
    "WORKDIR/checkpoints/). Default: the latest checkpoint.",
    lower_bound=0,
)
RESOLUTION = flags.DEFINE_integer(
    "resolution",
    None,
    "Use the last checkpoint of this resolution stage (e.g. 64) instead of the latest checkpoint.",
    lower_bound=4,
)
NETWORK = flags.DEFINE_enum(
    "network",
    "ema",
    list(checkpoint.NETWORK_ITEMS),
    "Which generator: 'ema' (the exponential moving average of the weights, the best samples) or 'raw' "
    "(the trained weights).",
)
SEED = flags.DEFINE_integer(
    "seed",
    0,
    "Random seed. generate.py: of the latents (grid, first image, random walk); evaluate.py: of the "
    "fake latents, the subset of real images and the metrics' random draws.",
    lower_bound=0,
)
BATCH_SIZE = flags.DEFINE_integer(
    "batch_size",
    0,
    "Images per generator (and metric) step over all devices, rounded up to a multiple of the "
    f"device count; 0 = automatic: {generation.DEFAULT_BATCH_PER_DEVICE} per device for generate.py, 64 for "
    "evaluate.py.",
    lower_bound=0,
)


NAMES = ("workdir", "step", "resolution", "network", "seed", "batch_size")


def take(module_name: str, *names: str) -> tuple[str, ...]:
    """Declares that the tool defined in module `module_name` takes the flags `names` of this module: they show
    in its --help. Returns `names`, for the tool's `refuse_others`."""
    for name in names:
        flags.FLAGS.register_key_flag_for_module(module_name, flags.FLAGS[name])
    return names


def refuse_others(program: str, taken: tuple[str, ...], why: str = "") -> None:
    """UsageError naming a flag of this module that was given although `program` does not take it (not in
    `taken`), with the reason `why` if given."""
    for name in NAMES:
        if name not in taken and flags.FLAGS[name].present:
            reason = f" ({why})" if why else ""
            raise UsageError(f"--{name} does not apply to {program}{reason}; drop it")


def workdir() -> str:
    """The --workdir flag; UsageError if it is missing."""
    if not WORKDIR.value:
        raise UsageError("--workdir is required: the directory of the training run")
    return WORKDIR.value


def checkpoint_choice(run_dir: str | None = None) -> dict:
    """The checkpoint chosen by the flags, as keyword arguments of `checkpoint.load_generator`
    (workdir, step, resolution, network), in `run_dir` (default: --workdir); UsageError if --step and
    --resolution are both given."""
    if STEP.value is not None and RESOLUTION.value is not None:
        raise UsageError("--step and --resolution both choose a checkpoint: give one of them")
    return dict(workdir=run_dir or workdir(), step=STEP.value, resolution=RESOLUTION.value, network=NETWORK.value)
