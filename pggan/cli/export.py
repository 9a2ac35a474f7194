"""Exports a trained generator into one portable `.pggan` file that pggan.load_generator reads without the run.

  # the EMA generator of the latest checkpoint
  pggan-export --workdir=runs/quickstart --out=quickstart.pggan
  # plus the raw G and D (for --config.init_from fine-tuning) and a StableHLO generator function
  pggan-export --workdir=runs/quickstart --out=quickstart.pggan --training_networks --stablehlo

The file is a zip archive: spec.json and the arrays as .npy (no pickle); see pggan/portable.py. --workdir
may also be a checkpoints folder or an official .pkl; --step / --resolution choose a run's checkpoint.
"""

from __future__ import annotations

import os

from absl import flags

from pggan import network_sources, portable
from pggan.cli import checkpoint_flags
from pggan.cli.runner import UsageError, program_main, run_program

_OUT = flags.DEFINE_string("out", None, f"The file to write, ending in {portable.EXTENSION}.")
_TRAINING_NETWORKS = flags.DEFINE_bool(
    "training_networks",
    False,
    "Also export the raw generator and the discriminator, so that --config.init_from can fine-tune from the file.",
)
_STABLEHLO = flags.DEFINE_bool(
    "stablehlo",
    False,
    "Also store the EMA generator as a serialized jax.export "
    "(StableHLO) function of a symbolic batch size: servable without pggan's code.",
)

_CHECKPOINT_FLAGS = checkpoint_flags.take(__name__, "workdir", "step", "resolution")


def run() -> None:
    out = _OUT.value
    if not out or not out.endswith(portable.EXTENSION):
        raise UsageError(f"--out must name the file to write, ending in {portable.EXTENSION} (got {out!r})")
    checkpoint_flags.refuse_others("pggan-export", _CHECKPOINT_FLAGS)
    choice = checkpoint_flags.checkpoint_choice()
    items = network_sources.ITEMS if _TRAINING_NETWORKS.value else ("generator_ema",)
    loaded = network_sources.load(choice["workdir"], items, step=choice["step"], resolution=choice["resolution"])
    stablehlo = (
        portable.export_function(loaded.generator(), loaded.resolution, loaded.alpha) if _STABLEHLO.value else None
    )
    source = {
        "step": int(loaded.meta.get("step", 0)),
        "path": os.path.basename(os.path.normpath(choice["workdir"])),
        "kind": loaded.meta["kind"],
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    portable.write(
        out,
        loaded.spec,
        loaded.parameters,
        resolution=loaded.resolution,
        alpha=loaded.alpha,
        source=source,
        stablehlo=stablehlo,
    )
    print(
        f"Wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB): {', '.join(loaded.parameters)}"
        f"{' and a StableHLO generator' if stablehlo else ''}, {loaded.resolution}x{loaded.resolution} at alpha "
        f"{loaded.alpha:g}, from step {source['step']}."
    )


main = program_main(run)


def entry_point() -> None:
    """The console script `pggan-export`."""
    run_program(main, __name__)


if __name__ == "__main__":
    entry_point()
