"""Official `(G, D, Gs)` pickle -> a pggan checkpoint that every tool (generate, evaluate) loads."""

from __future__ import annotations

import dataclasses
import os
import re

import ml_collections

from pggan import checkpoint, network_sources
from pggan.model import networks
from pggan.official.errors import SnapshotError
from pggan.training import defaults, train_state

_SNAPSHOT_NAME = re.compile(r"network-snapshot-(\d+)\.pkl$")


@dataclasses.dataclass(frozen=True)
class ImportSummary:
    """What was imported. resolution/alpha: where the networks were in their growth (the snapshot's lod)."""

    spec: networks.ModelSpec
    lod: float
    resolution: int
    alpha: float
    step: int
    dataset_name: str


def snapshot_kimg(pkl_path: str) -> float:
    """Training progress encoded in an official file name: network-snapshot-006000.pkl -> 6000 kimg, else 0."""
    match = _SNAPSHOT_NAME.search(os.path.basename(pkl_path))
    return float(match.group(1)) if match else 0.0


def imported_config(spec: networks.ModelSpec, dataset_name: str) -> ml_collections.ConfigDict:
    """The default training config with the imported model and a dataset that is never auto-prepared."""
    config = defaults.default_config()
    config.model = dataclasses.asdict(spec)
    config.dataset.name = dataset_name
    config.dataset.source = ""
    return config


def import_snapshot(
    pkl_path: str, workdir: str, *, kimg: float | None = None, progress=lambda stage: None
) -> ImportSummary:
    """Converts an official network pickle into a pggan checkpoint in `workdir`.

    Args:
      pkl_path: an official `(G, D, Gs)` pickle (karras2018iclr-*.pkl or network-snapshot-*.pkl).
      workdir: the pggan run directory to create; must not hold checkpoints yet.
      kimg: training progress to record (the checkpoint step is kimg * 1000); default from the file name.
      progress: called with a short description before each stage (for progress bars).

    Returns:
      ImportSummary. G -> 'generator', D -> 'discriminator', Gs -> 'generator_ema'. The checkpoint's
      meta resolution/alpha reproduce the snapshot's lod, so tools sample it as the official code would.
    Raises:
      SnapshotError (one-line message) for anything that cannot be imported; nothing is written then.
    """
    existing = checkpoint.checkpoint_dir(workdir)
    if os.path.isdir(existing) and os.listdir(existing):
        raise SnapshotError(f"{workdir!r} already holds checkpoints; import into a new, empty --workdir")
    progress("reading and converting G, D and Gs")
    loaded = network_sources.load(pkl_path, network_sources.ITEMS)
    spec, resolution, alpha = loaded.spec, loaded.resolution, loaded.alpha
    g, d, gs = (loaded.parameters[item] for item in ("generator", "discriminator", "generator_ema"))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(pkl_path))[0])
    config = imported_config(spec, f"imported-{stem}")
    nimg = int(round(1000 * (snapshot_kimg(pkl_path) if kimg is None else kimg)))
    if nimg < 0:
        raise SnapshotError(f"--kimg must be >= 0, got {kimg}")
    progress("writing the checkpoint")
    step = train_state.save_networks(workdir, config, g, d, gs, nimg=nimg, resolution=resolution, alpha=alpha)
    return ImportSummary(
        spec=spec,
        lod=loaded.meta["lod"],
        resolution=resolution,
        alpha=alpha,
        step=step,
        dataset_name=config.dataset.name,
    )
