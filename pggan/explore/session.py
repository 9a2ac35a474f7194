"""The explorer's model side: the states a source offers, their generators loaded and compiled once, and
every request of the page checked and answered as uint8 images. No web code: page.py shows these.

A source is anything `pggan.load_generator` takes. A run's workdir offers every kept checkpoint (the
newest few and the last one of every resolution stage, so the growth can be watched); one checkpoint
folder, a .pggan export or an official .pkl offers its one state. Each state has an EMA and a raw
generator (an export made without --training_networks has only the EMA one: asking for raw says so).

Generation is `pggan.trained_generator.TrainedGenerator`'s (hence pggan-generate's): jitted, in batches
of a fixed size split over the local devices, so there is one compile per resolution. `Session` loads
every state's EMA generator and draws one image with each when it starts, which does all the compiles;
requests then only run compiled code. Requests are served one at a time (a lock), from any thread.

What users type is text (seeds, counts) and is checked here: anything that cannot be drawn is an
`ExploreError` with a one-line message for the page.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Collection, Sequence

import jax
import numpy as np
from flax import nnx

from pggan import checkpoint, network_sources, parallel
from pggan.errors import UserError
from pggan.sampling import latent_space, media
from pggan.trained_generator import TrainedGenerator, load_generator

MAX_SEED = 2**32 - 1
MAX_GRID = 64  # images in a grid
MAX_STRIP = 16  # frames of an interpolation strip
VIDEO_FRAMES, VIDEO_FPS = 48, 24.0  # the interpolation MP4: two seconds from one seed to the other
KEPT_VIDEOS = 2  # the session's newest MP4s; the page serves its own copies from Gradio's cache
EDIT_RANGE = 3.0  # strength of a projection edit: -EDIT_RANGE ... EDIT_RANGE times the direction
CYCLE = "seed mod classes"  # the class choice of a conditional model that gives seed s class s mod label_size
NETWORKS = tuple(checkpoint.NETWORK_ITEMS)  # ('ema', 'raw')


class ExploreError(UserError):
    """A request the page cannot draw (a bad seed, grid size or latent file); the message says what to enter."""


@dataclasses.dataclass(frozen=True)
class State:
    """One network state of the source. name: its label on the page; step: its checkpoint in a run (None:
    the source holds one state); resolution, alpha: the stage it samples at."""

    name: str
    step: int | None
    resolution: int
    alpha: float


@dataclasses.dataclass(frozen=True)
class View:
    """How every picture is drawn: the state's name, network ('ema' or 'raw'), truncation psi in [0, 1]
    (1 = none) and class (a conditional model's class id as text, or CYCLE; ignored when unconditional)."""

    state: str
    network: str = "ema"
    truncation: float = 1.0
    label: str = CYCLE


def parse_int(text, what: str, low: int, high: int) -> int:
    """A whole number typed on the page (text or a number) in [low, high]; ExploreError otherwise."""
    value = str(text).strip()
    number = value[1:] if value[:1] in "+-" else value
    if not number.isdigit() or not low <= int(value) <= high:
        raise ExploreError(
            f"{what} must be a whole number from {low} to {high:,}, got {repr(value) if value else 'nothing'}"
        )
    return int(value)


def parse_float(value, what: str, low: float, high: float, hint: str = "") -> float:
    """A number typed on the page in [low, high]; ExploreError (ending with `hint`) otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number <= high:
        raise ExploreError(f"{what} must be a number from {low:g} to {high:g}{hint}, got {value!r}")
    return number


def parse_seed(text, what: str = "seed") -> int:
    """A seed typed on the page: 0 ... MAX_SEED."""
    return parse_int(text, what, 0, MAX_SEED)


def _state_name(step: int, resolution: int, alpha: float, stage_final: bool) -> str:
    """'20.032 kimg, 8x8 (stage end)' or '30 kimg, 16x16 fading in (alpha 0.50)': the step exactly, in kimg."""
    kimg = f"{step / 1000:.3f}".rstrip("0").rstrip(".")
    fading = f" fading in (alpha {alpha:.2f})" if alpha < 1 else ""
    return f"{kimg} kimg, {resolution}x{resolution}{fading}{' (stage end)' if stage_final else ''}"


class Session:
    """The generators of one source, ready to draw (see the module docstring).

    Attributes: path, states (list of State, oldest first; the newest is the default), spec (the ModelSpec),
    label_size, compile_seconds (what the start-up draws took, compiles included).
    batch_size: images per device step over all devices (0 = pggan-generate's automatic choice).
    """

    def __init__(self, path: str, *, batch_size: int = 0):
        self.path, self.batch_size = path, batch_size
        self.mesh = parallel.make_mesh(jax.local_devices())
        self.lock = threading.Lock()
        self._generators: dict[tuple[str, str], TrainedGenerator] = {}
        self.states = self._list_states()
        self._by_name = {state.name: state for state in self.states}
        start = time.perf_counter()
        self.spec = self._generator(self.states[-1].name, "ema").spec
        self.label_size = self.spec.label_size
        for state in self.states:
            self._draw(View(state.name), [0])
        self.compile_seconds = time.perf_counter() - start
        self._video_dir = tempfile.mkdtemp(prefix="pggan-explore-")
        self._video_count = itertools.count()
        self._videos: collections.deque[str] = collections.deque()

    def close(self) -> None:
        """Deletes the videos written for the page."""
        shutil.rmtree(self._video_dir, ignore_errors=True)

    def refresh(self) -> list[State]:
        """Adds the checkpoints that the run wrote since the session started, their EMA generators loaded and
        compiled (seconds for a new resolution), and returns them; [] for a source of one state. Checkpoints
        the run has deleted since stay listed while their generators are in memory."""
        if self.states[-1].step is None:
            return []
        with self.lock:
            added = self._list_states(known={state.step for state in self.states})
            for state in added:
                self.states.append(state)
                self._by_name[state.name] = state
                self._draw(View(state.name), [0])
        return added

    def _list_states(self, known: Collection[int] = ()) -> list[State]:
        """The states of the source, oldest first; of a run, only the checkpoints not in `known` (steps), so
        that a refresh verifies and reads only the new ones."""
        location = network_sources.checkpoint_location(self.path)
        if location and location[1] is None:
            with checkpoint.CheckpointReader(location[0]) as reader:
                new_steps = [step for step in reader.steps() if step not in known]
                if not new_steps:
                    return []
                steps, finals = reader.intact(new_steps), set(reader.stage_final_steps())
                metas = {step: reader.meta(step) for step in steps}
            return [
                State(_state_name(s, m["resolution"], m["alpha"], s in finals), s, m["resolution"], m["alpha"])
                for s, m in metas.items()
            ]
        generator = self._load(None, "ema")  # one state: its stage is known once it is loaded
        meta = generator.meta
        if meta["kind"] == "checkpoint":
            name = _state_name(meta["step"], generator.resolution, generator.alpha, bool(meta.get("stage_final")))
        else:
            name = f"{os.path.basename(self.path)}, {generator.resolution}x{generator.resolution}"
        self._generators[(name, "ema")] = generator
        return [State(name, None, generator.resolution, generator.alpha)]

    def _load(self, step: int | None, network: str) -> TrainedGenerator:
        """A generator of the source with its parameters placed on every device once (not per request)."""
        generator = load_generator(self.path, step=step, network=network, batch_size=self.batch_size)
        nnx.update(generator.module, jax.device_put(nnx.state(generator.module), parallel.replicated(self.mesh)))
        return generator

    def _generator(self, name: str, network: str) -> TrainedGenerator:
        if name not in self._by_name:
            raise ExploreError(f"unknown checkpoint {name!r}: choose one of the list")
        if network not in NETWORKS:
            raise ExploreError(f"the network must be one of {', '.join(NETWORKS)}, got {network!r}")
        key = (name, network)
        if key not in self._generators:
            self._generators[key] = self._load(self._by_name[name].step, network)
        return self._generators[key]

    def _label(self, view: View) -> int | None:
        """The class of a view: None for an unconditional model or CYCLE, else a class id."""
        if not self.spec.label_size or view.label == CYCLE:
            return None
        return parse_int(view.label, "the class", 0, self.spec.label_size - 1)

    @staticmethod
    def _truncation(view: View) -> float:
        return parse_float(view.truncation, "truncation", 0, 1, " (1 = none)")

    def _draw(self, view: View, seeds: Sequence[int]) -> np.ndarray:
        return self._generator(view.state, view.network).generate(
            seeds, truncation=self._truncation(view), labels=self._label(view)
        )

    def seed_image(self, view: View, seed) -> np.ndarray:
        """The image of one seed, uint8 [R, R, C]: `pggan.load_generator(...).generate([seed])[0]`."""
        seed = parse_seed(seed)
        with self.lock:
            return self._draw(view, [seed])[0]

    def grid(self, view: View, first_seed, count) -> np.ndarray:
        """The images of seeds first_seed ... first_seed + count - 1, row by row in a near-square grid
        (cells after the last image black): uint8 [rows * R, cols * R, C]."""
        first, count = parse_seed(first_seed, "the first seed"), parse_int(count, "the number of images", 1, MAX_GRID)
        if first + count - 1 > MAX_SEED:
            raise ExploreError(f"the seeds of the grid must stay below {MAX_SEED + 1:,}: start lower")
        with self.lock:
            images = self._draw(view, range(first, first + count))
        cols = int(np.ceil(np.sqrt(count)))
        rows = -(-count // cols)
        cells = np.zeros((rows * cols, *images.shape[1:]), np.uint8)
        cells[:count] = images
        return media.make_grid(cells, rows, cols)

    def interpolation(self, view: View, seed_a, seed_b, frames) -> tuple[np.ndarray, str]:
        """Spherical interpolation from the image of seed_a to that of seed_b: (strip of `frames` images
        left to right, uint8 [R, frames * R, C]; path of an MP4 of VIDEO_FRAMES frames at VIDEO_FPS, scaled
        up to at least `media.MIN_VIDEO_SIDE` pixels). Its first and last images are the seeds' images."""
        seeds = [parse_seed(seed_a, "seed A"), parse_seed(seed_b, "seed B")]
        frames = parse_int(frames, "the number of strip images", 2, MAX_STRIP)
        psi, label = self._truncation(view), self._label(view)
        path = os.path.join(self._video_dir, f"interpolation-{next(self._video_count)}-{seeds[0]}-{seeds[1]}.mp4")
        with self.lock:
            generator = self._generator(view.state, view.network)
            strip = generator.interpolate(seeds, frames, loop=False, truncation=psi, label=label)
            video = generator.interpolate(seeds, VIDEO_FRAMES, loop=False, truncation=psi, label=label)
        zoom = media.video_zoom(generator.resolution, generator.resolution)
        side = generator.resolution * zoom
        media.write_video((media.fit_to_frame(frame, side, side) for frame in video), path, fps=VIDEO_FPS)
        self._videos.append(path)
        while len(self._videos) > KEPT_VIDEOS:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._videos.popleft())
        return np.concatenate(list(strip), axis=1), path

    def edited_latent(self, view: View, latent_file: str | None, seed_a, seed_b, strength) -> np.ndarray:
        """The image of a projected latent moved along the direction from seed_a's latent to seed_b's:
        `generate_from_latents(z + strength * (z_b - z_a))[0]`, uint8 [R, R, C].

        latent_file: a .npy of float32 [1, latent_size] (pggan-project's latent.npy) or [latent_size].
        strength: in [-EDIT_RANGE, EDIT_RANGE]; 0 draws the projection itself.
        """
        z = self.read_latent(latent_file)
        seeds = [parse_seed(seed_a, "seed A"), parse_seed(seed_b, "seed B")]
        strength = parse_float(strength, "the edit strength", -EDIT_RANGE, EDIT_RANGE)
        z_a, z_b = latent_space.latents_for_seeds(seeds, self.spec.latent_size)
        edited = (z + np.float32(strength) * (z_b - z_a)).astype(np.float32)
        with self.lock:
            generator = self._generator(view.state, view.network)
            return generator.generate_from_latents(edited, self._truncation(view), labels=self._label(view))[0]

    def read_latent(self, path: str | None) -> np.ndarray:
        """A projection's latent file -> float32 [1, latent_size]; ExploreError for anything else."""
        if not path:
            raise ExploreError("load a latent first: the latent.npy that pggan-project wrote")
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            name = os.path.basename(path)
            raise ExploreError(f"{name} is not a NumPy .npy file ({e}): load pggan-project's latent.npy") from None
        size = self.spec.latent_size
        if z.shape not in ((size,), (1, size)) or not np.issubdtype(z.dtype, np.floating) or not np.isfinite(z).all():
            raise ExploreError(
                f"{os.path.basename(path)} holds {z.dtype} {z.shape}; this generator needs one finite latent "
                f"[1, {size}] (pggan-project's latent.npy for this model)"
            )
        return z.reshape(1, size).astype(np.float32)
