"""What a run writes besides checkpoints: TensorBoard events, sample-grid PNGs and the config.

Layout inside the workdir: `tensorboard/` (event files, via tensorboardX: no TensorFlow needed),
`samples/` (PNG grids), `config.json` (the config the run was started with). Only process 0 writes.
"""

from __future__ import annotations

import os

import numpy as np

from pggan import media
from pggan.training_config import TrainingConfig


class RunWriter:
    """Writes scalars and images of one run; a no-op writer when `enabled` is False (other processes)."""

    def __init__(self, workdir: str, *, enabled: bool = True):
        self.workdir = workdir
        self.enabled = enabled
        self._tensorboard = None
        if enabled:
            from tensorboardX import SummaryWriter  # imported lazily: only process 0 needs it

            os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
            self._tensorboard = SummaryWriter(logdir=os.path.join(workdir, "tensorboard"), flush_secs=30)

    def write_config(self, config: TrainingConfig) -> None:
        """Saves the run's config as `config.json` (kept from the first start of the run)."""
        path = os.path.join(self.workdir, "config.json")
        if self.enabled and not os.path.exists(path):
            with open(path + ".tmp", "w") as f:
                f.write(config.to_json(indent=2))
            os.replace(path + ".tmp", path)

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train") -> None:
        """TensorBoard scalars under '<prefix>/<name>' at `step` (images shown)."""
        if self.enabled:
            for name, value in values.items():
                self._tensorboard.add_scalar(f"{prefix}/{name}", value, step)

    def image(self, step: int, tag: str, image: np.ndarray, relative_path: str) -> None:
        """Saves uint8 [H, W, C] as a PNG at workdir/relative_path and as a TensorBoard image."""
        if self.enabled:
            media.save_png(image, os.path.join(self.workdir, relative_path))
            self._tensorboard.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
