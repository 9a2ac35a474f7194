"""The time a run has left, from the speeds it has measured so far.

Seconds per image are accumulated per resolution over every tick trained there (compiles and
evaluations left out), so the estimate settles instead of following each tick. A resolution not
trained yet takes the speed of the highest resolution measured, scaled by the ratio of their FLOPs
per training iteration (`pggan.model.flops`); each stage not compiled yet adds the mean compile time
measured so far.
"""

from __future__ import annotations

import math

from pggan.model import flops, networks
from pggan.training.run_length import Stage


class RemainingTime:
    """Estimates the seconds left of a run from its measured training speed and compile times.

    Args:
      spec: the model, for the FLOPs per image of each resolution.
      stages: the run's stages in training order (`run_length.images_per_resolution`).
    """

    def __init__(self, spec: networks.ModelSpec, stages: list[Stage]):
        self.stages = stages
        self._flops = {s.resolution: flops.iteration_flops_per_image(spec, s.resolution) for s in stages}
        self._trained: dict[int, tuple[int, float]] = {}  # resolution: (images, seconds)
        self._compile_seconds: list[float] = []

    def add_training(self, resolution: int, images: int, seconds: float) -> None:
        """Records `images` trained at `resolution` in `seconds` (training only); nothing when `images` is 0."""
        if images <= 0:
            return
        before_images, before_seconds = self._trained.get(resolution, (0, 0.0))
        self._trained[resolution] = (before_images + images, before_seconds + seconds)

    def add_compile(self, seconds: float) -> None:
        """Records the compile time of one stage's training step."""
        self._compile_seconds.append(seconds)

    def seconds_per_image(self, resolution: int) -> float:
        """Measured seconds per image at `resolution`, or scaled from the highest measured one; NaN before any."""
        if resolution in self._trained:
            images, seconds = self._trained[resolution]
            return seconds / images
        if not self._trained:
            return math.nan
        measured = max(self._trained)
        images, seconds = self._trained[measured]
        return seconds / images * self._flops[resolution] / self._flops[measured]

    def seconds_left(self, nimg: int) -> float:
        """Seconds to train from `nimg` images shown to the end, with one compile for each stage not begun;
        NaN before any speed is measured."""
        start, left, stages_ahead = 0, 0.0, 0
        for stage in self.stages:
            images_left = min(stage.images, start + stage.images - nimg)
            if images_left > 0:
                left += images_left * self.seconds_per_image(stage.resolution)
            stages_ahead += start >= nimg
            start += stage.images
        if stages_ahead and self._compile_seconds:
            left += stages_ahead * sum(self._compile_seconds) / len(self._compile_seconds)
        return left
