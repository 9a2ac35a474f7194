"""Exception types of the metrics library.

Every message is one line that says what is wrong and what to do, so that a CLI can print it and
exit non-zero without a traceback.
"""

from __future__ import annotations

from pggan.errors import UserError


class MetricError(UserError):
    """Base class of every error raised by `pggan.metrics`."""


class MetricInputError(MetricError):
    """Images, features or statistics that a metric cannot use (wrong dtype, shape, size, count)."""


class WeightsFileError(MetricError):
    """A weights file that is missing, unreadable or not the expected network."""


class UnsafeWeightsFileError(WeightsFileError):
    """A weights file whose pickle asks for something other than plain tensors; nothing was run."""
