"""Every exception pggan defines is a one-line user error with the one base `pggan.errors.UserError`."""

import importlib
import inspect
import pkgutil

import pggan
from pggan.errors import UserError

# Exceptions that never leave the library: the module that raises them turns them into a UserError.
INTERNAL = {"MalformedFileError": "each weight-file loader reports it as its own one-line error"}


# The programs (the launcher and pggan/cli's console scripts) define absl flags under shared names (--out,
# --outdir, --workdir ...), so no two of them load into one process; they raise UsageError (pggan.cli.runner).
PROGRAM_SUPPORT = {"pggan.cli.runner", "pggan.cli.checkpoint_flags"}


def _pggan_modules():
    for info in pkgutil.walk_packages(pggan.__path__, "pggan."):
        program = info.name == "pggan.main" or (info.name.startswith("pggan.cli.") and info.name not in PROGRAM_SUPPORT)
        if not program:
            yield importlib.import_module(info.name)


def test_every_exception_class_derives_from_user_error():
    defined = {
        cls
        for module in _pggan_modules()
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__.startswith("pggan.")
    }
    assert len(defined) >= 20  # ConfigError, DataError and its kinds, CheckpointError, MetricError, ...
    assert [cls.__qualname__ for cls in defined if not issubclass(cls, UserError)] == list(INTERNAL)


def test_help_requests_are_told_from_other_arguments():
    """`run_program` turns absl's exit status 1 after help into 0 only when help was asked for."""
    from pggan.cli.runner import asked_for_help

    for arguments in (["--help"], ["-?"], ["--helpfull"], ["-helpshort"], ["--x=1", "--helpxml"], ["--help=true"]):
        assert asked_for_help(arguments), arguments
    for arguments in ([], ["--help=false"], ["--nohelp"], ["--", "--help"], ["--workdir=--help"], ["help"]):
        assert not asked_for_help(arguments), arguments
