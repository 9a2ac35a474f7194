"""Third-party packages that only some paths need, imported on first use with a one-line error if missing.

Training reads prepared datasets with array_record (and, for levels not held on the devices, grain),
writes TensorBoard events with tensorboardX and videos with imageio-ffmpeg; preparing datasets needs
tensorflow-datasets; pggan-explore needs the optional extra `explore` (Gradio), and driving its page in a
browser the `test` extra (Selenium). A machine that lacks one of them (e.g. a GPU machine with only JAX) gets
`MissingPackageError` naming the package and what needs it, instead of a traceback.
"""

from __future__ import annotations

import importlib
import sys
import types

from pggan.errors import UserError

# module name -> the name pip installs it by
PIP_NAMES = {
    "array_record": "array_record",
    "grain": "grain",
    "imageio_ffmpeg": "imageio-ffmpeg",
    "ml_collections": "ml_collections",
    "tensorboardX": "tensorboardX",
    "tensorflow_datasets": "tensorflow-datasets",
}
# module name -> the optional extra of pggan that installs it
EXTRAS = {"gradio": "explore", "selenium": "test"}


class MissingPackageError(UserError):
    """A Python package that this path needs is not installed."""


def missing_package(error: ModuleNotFoundError, purpose: str) -> MissingPackageError:
    """The one-line error for `error` (raised importing a package), saying that `purpose` needs it."""
    top = (error.name or "").split(".")[0]
    pip_name = PIP_NAMES.get(top, top)
    if top in EXTRAS:
        return MissingPackageError(
            f"{purpose} needs the Python package {pip_name}, which is not installed: "
            f"pip install -e '.[{EXTRAS[top]}]' in the pggan checkout (or pip install {pip_name})"
        )
    return MissingPackageError(
        f"{purpose} needs the Python package {pip_name}, which is not installed: "
        f"pip install {pip_name} (or pip install -e . for all of pggan's packages)"
    )


def require(module: str, purpose: str) -> types.ModuleType:
    """Imports `module` (e.g. 'array_record.python.array_record_module'); MissingPackageError if absent.

    purpose: what needs it, for the message (e.g. 'reading a prepared dataset').
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise missing_package(error, purpose) from None


def import_or_exit(module: str, purpose: str) -> types.ModuleType:
    """`require` for a program's top-level imports: prints the one-line error and exits 1 if it is missing."""
    try:
        return require(module, purpose)
    except MissingPackageError as error:
        sys.exit(f"error: {error}")
