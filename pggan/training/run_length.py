"""Length of a run: the images it shows per resolution stage, and its wall time from per-resolution speeds.

The training loop shows `minibatch * d_steps_per_round` real images per round at the resolution
`Schedule.at(images shown)` gives (its minibatch included), until `total_kimg`. `images_per_resolution`
replays that loop exactly, jumping over the rounds between resolution changes (found by bisection:
the resolution never decreases), so a 12,000 kimg schedule takes milliseconds.
"""

from __future__ import annotations

import dataclasses

from pggan.training.schedule import Schedule


@dataclasses.dataclass(frozen=True)
class Stage:
    """The rounds trained at one (resolution, minibatch): images shown and rounds."""

    resolution: int
    minibatch: int
    images: int
    rounds: int


def _first_change(schedule: Schedule, nimg: int, round_images: int, key: tuple[int, int], total: int) -> int:
    """Rounds from nimg until the first round whose (resolution, minibatch) differs or training ends."""

    def same(k: int) -> bool:
        n = nimg + k * round_images
        phase = schedule.at(n)
        return n < total and (phase.resolution, phase.minibatch) == key

    high = 1
    while same(high):
        high *= 2
    low = high // 2  # same(low) holds (low = 0 is the current round); same(high) does not
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if same(mid) else (low, mid)
    return high


def images_per_resolution(schedule: Schedule) -> list[Stage]:
    """The stages of a whole run, in training order, as the training loop would run them."""
    total = round(schedule.total_kimg * 1000)
    stages, nimg = [], 0
    while nimg < total:
        phase = schedule.at(nimg)
        key = (phase.resolution, phase.minibatch)
        round_images = phase.minibatch * schedule.d_steps_per_round
        rounds = _first_change(schedule, nimg, round_images, key, total)
        stages.append(Stage(phase.resolution, phase.minibatch, rounds * round_images, rounds))
        nimg += rounds * round_images
    return stages


def project_wall_time(
    stages: list[Stage], img_per_s: dict[int, float], compile_s: dict[int, float] | None = None
) -> dict:
    """Seconds of a run: images / (images per second) per stage, plus one compile per stage.

    Args:
      stages: from `images_per_resolution`.
      img_per_s: measured speed per resolution (every stage's resolution must be present).
      compile_s: compile seconds per resolution (optional).

    Returns:
      {'total_s', 'train_s', 'compile_s', 'per_resolution': {res: {'images', 'seconds'}}}.

    Raises:
      KeyError: a stage's resolution was not measured (the message lists the missing ones).
    """
    missing = sorted({s.resolution for s in stages} - set(img_per_s))
    if missing:
        raise KeyError(f"no measured speed for resolutions {missing}")
    per_resolution: dict[int, dict] = {}
    for stage in stages:
        entry = per_resolution.setdefault(stage.resolution, {"images": 0, "seconds": 0.0})
        entry["images"] += stage.images
        entry["seconds"] += stage.images / img_per_s[stage.resolution]
    train_s = sum(e["seconds"] for e in per_resolution.values())
    compiles = sum((compile_s or {}).get(s.resolution, 0.0) for s in stages)
    return {"total_s": train_s + compiles, "train_s": train_s, "compile_s": compiles, "per_resolution": per_resolution}
