"""Source specs, as users write them, to sources: folder:<path>, digits, synthetic, tfds:<name>[/<config>].

Kept apart from `pggan.data.sources` (the local sources) and `pggan.data.catalog` (the tensorflow-datasets
catalog, which builds on sources.Source), so that neither of those imports the other back.
"""

from __future__ import annotations

from pggan.data import imaging
from pggan.data.errors import SourceError
from pggan.data.sources import DIGITS_RESOLUTION, DigitsSource, FolderSource, Source, SyntheticSource

# Sources that make their images themselves (no path): they auto-prepare datasets named after them.
BUILTIN_SOURCES = ("digits", "synthetic")


def make_source(
    spec: str,
    *,
    resolution: int | None = None,
    num_examples: int | None = None,
    crop: str = "center",
    channels: int = 3,
    seed: int = 0,
    labels_from_subfolders: bool = False,
    tfds_data_dir: str | None = None,
    manual_dir: str | None = None,
) -> Source:
    """Builds the source named by `spec` (see the module docstring). Cheap: nothing is scanned yet.

    resolution: target power-of-two resolution; required for folders, optional for catalog datasets
      (default: the catalog's natural resolution, see catalog.py) and synthetic (default 32); digits
      are always 32x32 (a lower resolution is accepted: it is one of the prepared levels).
    num_examples: number of synthetic images (default 1000).
    tfds_data_dir / manual_dir: where tfds keeps catalog datasets / manually downloaded archives.
    Raises SourceError with a one-line explanation for bad specs.
    """
    if resolution is not None and not (
        imaging.MIN_RESOLUTION <= resolution <= imaging.MAX_RESOLUTION and imaging.is_power_of_two(resolution)
    ):
        raise SourceError(
            f"resolution must be a power of two in [{imaging.MIN_RESOLUTION}, {imaging.MAX_RESOLUTION}] "
            f"(the models stop at {imaging.MAX_RESOLUTION}x{imaging.MAX_RESOLUTION}), got {resolution}"
        )
    if spec.startswith("folder:"):
        if resolution is None:
            raise SourceError("a folder source needs a target resolution (a power of two, e.g. --resolution=256)")
        return FolderSource(
            spec[len("folder:") :],
            resolution,
            crop=crop,
            channels=channels,
            labels_from_subfolders=labels_from_subfolders,
        )
    if spec == "digits":
        if resolution is not None and resolution > DIGITS_RESOLUTION:
            raise SourceError(
                f"digits are {DIGITS_RESOLUTION}x{DIGITS_RESOLUTION} (with every lower level), "
                f"not {resolution}x{resolution}"
            )
        return DigitsSource()
    if spec == "synthetic":
        return SyntheticSource(resolution or 32, 1000 if num_examples is None else num_examples, seed)
    if spec.startswith("tfds:"):
        from pggan.data import catalog  # imported on demand: it loads tensorflow-datasets

        return catalog.CatalogSource(
            spec[len("tfds:") :], resolution=resolution, data_dir=tfds_data_dir, manual_dir=manual_dir
        )
    raise SourceError(f"unknown source {spec!r}: use folder:<path>, digits, synthetic or tfds:<name>[/<config>]")
