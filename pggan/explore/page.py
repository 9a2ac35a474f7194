"""The explorer's web page: Gradio components over a `session.Session`, served on 127.0.0.1 by uvicorn.

Gradio (an optional extra: pip install -e '.[explore]') is the ML ecosystem's usual library for such
pages: image, video and file components, a download button, a request queue and a test client, with its
front end shipped inside the package. The page works offline: no analytics or version check, no share
link, fonts served by Gradio itself. One request runs at a time (a queue of concurrency 1, and the
session's lock): a press while another request runs waits for it.

Layout: the network state (every kept checkpoint, so the growth can be watched), EMA or raw generator,
truncation and, for a conditional model, the class apply to every tab:
  Seed           a seed box, a random button, the image (downloadable PNG at the generator's resolution)
  Grid           the images of N consecutive seeds
  Interpolation  a strip of images between two seeds and a two-second MP4
  Projection     pggan-project's latent.npy, moved along the direction from one seed's latent to another's
What cannot be drawn (a seed of -1 or text, a grid of 0 or 10,000 images, a wrong file) is one line
under the controls (#status), never a traceback. Element ids (`#image`, `#generate`, ...) are what
browser.py drives.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from pggan import dependencies
from pggan.errors import UserError
from pggan.explore import session as explore_session
from pggan.explore.session import Session, View

HOST = "127.0.0.1"
PURPOSE = "pggan-explore (the web page of a trained generator)"
# Gradio keeps every picture and video it serves in its cache (GRADIO_TEMP_DIR): a grid of 64 images at
# 1024 px is one 8192x8192 picture.
CACHE_SECONDS = 600
# Small images are shown large with square pixels; the PNGs served keep the generator's resolution.
CSS = """
#image img, #grid img, #edited img, #strip img {
  image-rendering: pixelated; object-fit: contain !important; width: 100% !important; height: 320px !important;
}
#strip img { height: 160px !important; }
"""


class PageError(UserError):
    """The page cannot be served (its port is taken, or its server did not start)."""


def gradio():
    """The gradio module; a one-line MissingPackageError naming the extra when it is not installed."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no version check or analytics (offline)
    return dependencies.require("gradio", PURPOSE)


def _shown(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, C] -> what gr.Image shows exactly: [H, W, 3] as is, [H, W] for one channel."""
    return image[..., 0] if image.shape[-1] == 1 else image


def _handler(
    session: Session, draw: Callable, what: Callable[..., str], outputs: int, answers: Iterator[int]
) -> Callable:
    """A Gradio handler: (state, network, truncation, class, *tab inputs) -> (the tab's `outputs` values, the
    status line). draw(view, *tab inputs) gives the values; a UserError empties them and becomes the status.
    Status lines are numbered from `answers`, so that an answer equal to the one before still shows."""

    def handle(state, network, truncation, label, *args):
        view = View(state, network, truncation, label)
        start = time.perf_counter()
        try:
            result = draw(view, *args)
        except UserError as e:
            return (None,) * outputs + (f"Error: {e} ({next(answers)})",)
        milliseconds = 1000 * (time.perf_counter() - start)
        generator = "EMA" if view.network == "ema" else "raw"
        described = f"{generator} generator of {view.state}, truncation {float(view.truncation):g}"
        values = result if isinstance(result, tuple) else (result,)
        return (*values, f"{what(*args)}: {described}; {milliseconds:.0f} ms ({next(answers)}).")

    return handle


def build(session: Session, cache_seconds: int = CACHE_SECONDS):
    """The page of a session: a gr.Blocks with its queue set (one request at a time), whose pictures and
    videos are deleted from Gradio's cache every `cache_seconds` once older than that."""
    gr = gradio()
    names = [state.name for state in session.states]
    classes = [explore_session.CYCLE] + [str(k) for k in range(session.label_size)]
    final = session.spec.resolution
    with gr.Blocks(
        title="pggan explorer", analytics_enabled=False, delete_cache=(cache_seconds, cache_seconds)
    ) as page:
        gr.Markdown(
            f"## pggan explorer\n`{session.path}`: {final}x{final}x{session.spec.num_channels} images, "
            f"latent size {session.spec.latent_size}"
            + (f", {session.label_size} classes" if session.label_size else ", unconditional")
            + f"; {len(names)} network state{'s' if len(names) > 1 else ''}"
            + (" (reload the page for checkpoints written since)." if session.states[-1].step is not None else ".")
        )
        with gr.Row():
            state = gr.Radio(names, value=names[-1], label="Checkpoint", elem_id="state", scale=3)
            network = gr.Radio(
                list(explore_session.NETWORKS), value="ema", label="Generator (EMA or raw)", elem_id="network"
            )
        with gr.Row():
            truncation = gr.Slider(0, 1, value=1, step=0.05, label="Truncation psi (1 = none)", elem_id="truncation")
            label = gr.Dropdown(
                classes,
                value=explore_session.CYCLE,
                label="Class",
                visible=bool(session.label_size),
                elem_id="label",
            )
        status = gr.Markdown(elem_id="status")
        view_inputs = [state, network, truncation, label]
        answers = itertools.count(1)

        with gr.Tab("Seed"):
            with gr.Row():
                seed = gr.Textbox("0", label="Seed", elem_id="seed", max_lines=1)
                random = gr.Button("Random seed", elem_id="random")
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
            image = gr.Image(label="Image", format="png", interactive=False, buttons=["download"], elem_id="image")
        with gr.Tab("Grid"):
            with gr.Row():
                grid_seed = gr.Textbox("0", label="First seed", elem_id="grid_seed", max_lines=1)
                grid_count = gr.Textbox("16", label=f"Images (1 to {explore_session.MAX_GRID})", elem_id="grid_count")
                grid_button = gr.Button("Draw grid", variant="primary", elem_id="grid_button")
            grid = gr.Image(label="Grid", format="png", interactive=False, buttons=["download"], elem_id="grid")
        with gr.Tab("Interpolation"):
            with gr.Row():
                seed_a = gr.Textbox("1", label="Seed A", elem_id="interp_a", max_lines=1)
                seed_b = gr.Textbox("2", label="Seed B", elem_id="interp_b", max_lines=1)
                frames = gr.Textbox("8", label=f"Strip images (2 to {explore_session.MAX_STRIP})", elem_id="frames")
                interp_button = gr.Button("Interpolate", variant="primary", elem_id="interp_button")
            strip = gr.Image(label="A -> B", format="png", interactive=False, buttons=["download"], elem_id="strip")
            video = gr.Video(label="A -> B (MP4)", interactive=False, loop=True, height=320, elem_id="video")
        with gr.Tab("Projection"):
            gr.Markdown("Load the `latent.npy` of `pggan-project` and move it along the direction from seed A to B.")
            with gr.Row():
                latent = gr.File(label="latent.npy", file_types=[".npy"], elem_id="latent")
                edit_a = gr.Textbox("1", label="Seed A", elem_id="edit_a", max_lines=1)
                edit_b = gr.Textbox("2", label="Seed B", elem_id="edit_b", max_lines=1)
            limit = explore_session.EDIT_RANGE
            strength = gr.Slider(
                -limit, limit, value=0, step=0.1, label="Strength (0 = the projection)", elem_id="strength"
            )
            edit_button = gr.Button("Draw edit", variant="primary", elem_id="edit_button")
            edited = gr.Image(label="Edited", format="png", interactive=False, buttons=["download"], elem_id="edited")

        def wire(event, draw, what, inputs, outputs, api_name=False):
            """Answers `event` with draw(view, *inputs) into `outputs` and the status line. Gradio's progress
            overlay goes on the outputs, so that the status line changes only with the answer."""
            handler = _handler(session, draw, what, len(outputs), answers)
            return event(
                handler,
                view_inputs + inputs,
                outputs + [status],
                api_name=api_name,
                show_progress_on=outputs,
                concurrency_id="generator",  # one queue for every drawing event, served one at a time
            )

        def interpolation(view, a, b, n):
            strip_image, video_path = session.interpolation(view, a, b, n)
            return _shown(strip_image), video_path

        def draw_seed(view, seed):
            return _shown(session.seed_image(view, seed))

        wire(generate.click, draw_seed, "Seed {}".format, [seed], [image], "seed_image")
        wire(seed.submit, draw_seed, "Seed {}".format, [seed], [image])
        wire(random.click(_random_seed, None, seed, api_name=False).then, draw_seed, "Seed {}".format, [seed], [image])
        wire(
            grid_button.click,
            lambda view, first, count: _shown(session.grid(view, first, count)),
            "Grid of {1} seeds from {0}".format,
            [grid_seed, grid_count],
            [grid],
            "grid",
        )
        wire(
            interp_button.click,
            interpolation,
            "Interpolation from seed {} to {}".format,
            [seed_a, seed_b, frames],
            [strip, video],
            "interpolation",
        )
        wire(
            edit_button.click,
            lambda view, z, a, b, t: _shown(session.edited_latent(view, z, a, b, t)),
            lambda z, a, b, t: f"Projection moved {t} x (seed {b} - seed {a})",
            [latent, edit_a, edit_b, strength],
            [edited],
            "edit_latent",
        )

        def refreshed():
            """The checkpoint list when the page is (re)loaded: a running training's new checkpoints join it."""
            try:
                session.refresh()
            except UserError as error:  # e.g. a checkpoint deleted while it was read: the list stays
                gr.Warning(str(error))
            names = [state.name for state in session.states]
            return gr.Radio(choices=names, value=names[-1])

        page.load(refreshed, None, [state], api_name=False, concurrency_id="generator")
    page.queue(default_concurrency_limit=1)
    return page


def _random_seed() -> str:
    return str(np.random.default_rng().integers(0, explore_session.MAX_SEED + 1))


class Served:
    """A page served by uvicorn from a thread on 127.0.0.1. url: its address; wait() serves until Ctrl-C;
    close() stops it."""

    def __init__(self, page, server, thread: threading.Thread, url: str):
        self.page, self.url, self._server, self._thread = page, url, server, thread

    def wait(self) -> None:
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join()
        self.page.close(verbose=False)


def listen(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1:PORT (0 = any free port) for `serve`; a port in use is a one-line PageError.
    Taken before the (slow) loading, so that a busy port is said at once."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port just freed is free
    try:
        listener.bind((HOST, port))
    except OSError as e:
        listener.close()
        message = f"cannot serve on {HOST}:{port} ({e.strerror}); choose another --port (0 = any free port)"
        raise PageError(message) from None
    return listener


def serve(page, listener: socket.socket, *, timeout: float = 300) -> Served:
    """Serves the page on the socket of `listen` from a thread, and returns once it answers.

    The page is mounted on a FastAPI app run by uvicorn, rather than served by gr.Blocks.launch, whose
    server must start within 5 s (not always so on a busy machine); `timeout` seconds bound the start.
    """
    gr = gradio()
    fastapi, uvicorn = (dependencies.require(name, PURPOSE) for name in ("fastapi", "uvicorn"))
    port = listener.getsockname()[1]
    app = gr.mount_gradio_app(
        fastapi.FastAPI(),
        page,
        path="",
        server_name=HOST,
        server_port=port,
        footer_links=[],
        show_error=False,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        enable_monitoring=False,
        theme=gr.themes.Default(),
        css=CSS,
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True, name="pggan-explore")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise PageError(f"the page's server on {HOST}:{port} did not start within {timeout:g} s")
        time.sleep(0.01)
    return Served(page, server, thread, f"http://{HOST}:{port}/")
