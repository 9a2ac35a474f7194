"""Errors of the official-network import; each message is one line that says what to do."""

from pggan.errors import UserError


class SnapshotError(UserError):
    """An official network pickle cannot be imported (missing, corrupt, or an unsupported network)."""


class UnsafePickleError(SnapshotError):
    """The pickle asks to load something other than network states and numpy arrays; nothing was run."""


THEANO_PICKLE_MESSAGE = (
    "this pickle comes from the original Theano version of PGGAN; re-save it in the TensorFlow format with the "
    "official code's misc.load_pkl + misc.save_pkl, or use the TensorFlow-version files "
    "(networks/tensorflow-version on the official Google Drive)"
)
