"""Errors of the official-network import; each message is one line that says what to do."""


class SnapshotError(Exception):
    """An official network pickle cannot be imported (missing, corrupt, or an unsupported network)."""


class UnsafePickleError(SnapshotError):
    """The pickle asks to load something other than network states and numpy arrays; nothing was run."""
