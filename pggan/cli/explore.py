"""Explores a trained generator in a web page: seeds, grids, interpolations, checkpoints, projections.

  pip install -e '.[explore]'     # Gradio, once
  pggan-explore --workdir=runs/quickstart            # then open http://127.0.0.1:7860
  pggan-explore --workdir=karras2018iclr-celebahq-1024x1024.pkl --port=8080

--workdir is anything pggan.load_generator takes: a run's workdir (every kept checkpoint can be chosen on
the page, EMA or raw), one checkpoint folder, a .pggan export or an official .pkl. The page listens on
127.0.0.1 only; from a remote GPU machine, forward the port: ssh -L 7860:127.0.0.1:7860 user@gpu-machine,
then open http://127.0.0.1:7860 on your own computer. Every network state is loaded and compiled before
the address is printed; Ctrl-C stops the server.
"""

from __future__ import annotations

import contextlib

from absl import flags

from pggan.cli import checkpoint_flags
from pggan.cli.runner import program_main, run_program
from pggan.explore import page
from pggan.explore.session import Session

_PORT = flags.DEFINE_integer(
    "port",
    7860,
    "Port of the page on 127.0.0.1 (0 = any free port).",
    lower_bound=0,
    upper_bound=65535,
)

_CHECKPOINT_FLAGS = checkpoint_flags.take(__name__, "workdir", "batch_size")


def run() -> None:
    checkpoint_flags.refuse_others("pggan-explore", _CHECKPOINT_FLAGS, why="the page offers every choice")
    workdir = checkpoint_flags.workdir()
    page.gradio()  # a missing extra and a busy port are said before the (slow) loading
    with contextlib.closing(page.listen(_PORT.value)) as listener:
        session = Session(workdir, batch_size=checkpoint_flags.BATCH_SIZE.value)
        try:
            app = page.build(session)
            print(
                f"Loaded {len(session.states)} network state(s) of {session.path} and compiled them in "
                f"{session.compile_seconds:.1f} s.",
                flush=True,
            )
            served = page.serve(app, listener)
            print(f"pggan-explore is serving {served.url} (Ctrl-C stops it).", flush=True)
            served.wait()
        finally:
            session.close()


main = program_main(run)


def entry_point() -> None:
    """The console script `pggan-explore`."""
    run_program(main, __name__)


if __name__ == "__main__":
    entry_point()
