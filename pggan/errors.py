"""The one base of every error whose message is the whole story for the user.

A `UserError` says in one line what is wrong and what to do. The programs (`python -m pggan.main`
and the tools) print it as `error: <message>` on stderr and exit with status 1, without a
traceback; any other exception is a bug and keeps its traceback. Each package derives its own
errors from it (`ConfigError`, `DataError`, `CheckpointError`, `MetricError`, ...), so a program
catches exactly one type. Free of imports, so that every layer can use it.
"""


class UserError(Exception):
    """A problem the user can fix (a setting, a file, a missing dataset); the message says how."""
