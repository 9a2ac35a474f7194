"""How the programs in tools/ report a user error: one line on stderr, exit status 1, no traceback.

Kept free of heavy imports (no media, data or checkpoint stack), so that tools/benchmark.py runs on
machines that have only JAX and flax.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app, flags, logging

from pggan.errors import UserError


class UsageError(UserError):
    """Flags that are missing, contradict each other or do not apply; the message names the flags."""


def run_tool(run: Callable[[], None]) -> int:
    """Calls run() with quiet logs; a `UserError` becomes 'error: <message>' on stderr.

    Library INFO logs (Orbax logs every step of a restore) are hidden unless --verbosity is given.
    Returns the exit status: 0 on success, 1 after a user error. Other exceptions propagate.
    """
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    try:
        run()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def program_main(run: Callable[[], None]) -> Callable[[list[str]], int]:
    """The absl `main(argv)` of a program whose settings are all flags: positional arguments are refused in
    one line, then `run_tool(run)`; returns the exit status."""

    def main(argv: list[str]) -> int:
        def checked_run() -> None:
            if len(argv) > 1:
                raise UsageError(f"unexpected arguments {' '.join(argv[1:])}: every setting is a --flag")
            run()

        return run_tool(checked_run)

    return main


# absl's flags that print help and end the program before main, with and without their leading dashes.
_HELP_FLAGS = frozenset({"help", "?", "helpshort", "helpfull", "helpxml"})


def asked_for_help(arguments: list[str]) -> bool:
    """Whether command-line `arguments` (without the program) hold one of absl's help flags set to true, before
    any '--' that ends the flags."""
    for argument in arguments:
        if argument == "--":
            return False
        name, has_value, value = argument.lstrip("-").partition("=")
        if argument.startswith("-") and name in _HELP_FLAGS:
            if not has_value or value.lower() not in ("false", "f", "0"):
                return True
    return False


def run_program(main: Callable[[list[str]], int], module_name: str, **app_options) -> None:
    """Runs `main` as an absl program (a console script pggan-*, or a tools/ wrapper) whose --help shows the
    flags and docstring of module `module_name`, the module that defines them, whatever file was started.

    Help that was asked for ends with exit status 0 (absl's own flags exit with 1, as if it had failed)."""
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    sys.modules["__main__"].__doc__ = sys.modules[module_name].__doc__
    try:
        app.run(main, **app_options)
    except SystemExit as exit_request:
        if exit_request.code == 1 and asked_for_help(sys.argv[1:]):
            raise SystemExit(0) from None
        raise
