"""Exceptions of the data package. Each message is one line that says what to do about it."""

from pggan.errors import UserError


class DataError(UserError):
    """Base class: a problem with a dataset, a source or the input pipeline that the user can fix."""


class SourceError(DataError):
    """A source cannot be used: unknown name, missing or empty folder, missing manual download."""


class UnreadableImageError(DataError):
    """One image file cannot be decoded (the preparation skips it and reports it)."""


class MissingDependencyError(DataError):
    """An optional dependency is needed (e.g. TensorFlow to prepare some catalog datasets)."""


class PreparationConflictError(DataError):
    """The target directory holds a finished or an interrupted preparation that does not match."""


class DatasetNotFoundError(DataError):
    """No prepared dataset with that name in that data_dir."""


class DatasetMismatchError(DataError):
    """A prepared dataset does not fit the run: resolution too low, wrong channels, no labels..."""
