"""pggan-explore end to end on a tiny trained run: its page served on a free port of 127.0.0.1 and driven by a
real headless Chromium (Selenium, `pggan.explore.browser`). What the page shows is read back from the page
and compared with `pggan.load_generator` byte for byte; checkpoints and networks switch; interpolations,
grids and projection edits draw; bad input gets one line on the page. Gradio's own client sends requests
at once; the program serves, and refuses in one line.

Chromium is not optional here: without /usr/bin/chromium and /usr/bin/chromedriver the browser tests fail,
naming the Debian packages (.ci/run installs them).
"""

import os
import subprocess
import sys
import time
import urllib.request

import jax
import numpy as np
import pytest

import pggan
from pggan.explore import browser, page
from pggan.explore.session import CYCLE, MAX_GRID, VIDEO_FRAMES, ExploreError, Session, View
from pggan.sampling import generation, latent_space, media
from pggan.training import loop
from tests import official_format, tool_support
from tests.run_support import REPO, load_recipe, subprocess_env, write_checkpoints
from tests.training_support import free_port, tiny_config

pytestmark = pytest.mark.slow  # a tiny training run, a web server and a browser

LATENT_SIZE = 8  # the tiny recipe's


@pytest.fixture(scope="module")
def run_dir(tiny_data_dir, tmp_path_factory):
    """A real tiny training run (4x4 -> 16x16): checkpoints at the end of every stage and the newest few."""
    workdir = str(tmp_path_factory.mktemp("explore") / "run")
    loop.train_and_evaluate(tiny_config(tiny_data_dir), workdir, devices=jax.devices()[:1])
    return workdir


@pytest.fixture(scope="module")
def served(run_dir):
    """(session, address) of the page of run_dir, served from this process."""
    session = Session(run_dir)
    served = page.serve(page.build(session), page.listen(0))
    yield session, served.url
    served.close()
    session.close()


@pytest.fixture(scope="module")
def explorer(served):
    browser.check_chromium()  # fails, naming the packages to install, when Chromium is missing
    with browser.ExplorerPage(served[1]) as opened:
        yield opened


def _state(session: Session, resolution: int):
    return [state for state in session.states if state.resolution == resolution][-1]


def _press(explorer, button: str, output: str) -> tuple[str, np.ndarray | None]:
    """(status line, the output's image read back from the page, None after an error)."""
    _, status, src = explorer.press(button, output)
    return status, None if src is None else explorer.image(src)


def test_the_page_offers_every_kept_checkpoint_and_loads_nothing_from_outside(served, explorer):
    session, url = served
    assert [state.resolution for state in session.states][:3] == [4, 8, 16]
    labels = [label.text.strip() for label in explorer.driver.find_elements("css selector", "#state label")]
    assert labels == [state.name for state in session.states]
    assert sum("(stage end)" in label for label in labels) >= 3
    resources = explorer.resources()
    assert len(resources) > 10 and all(address.startswith(url.rstrip("/")) for address in resources), resources


def test_a_seed_pressed_in_the_browser_draws_load_generators_image(run_dir, explorer):
    explorer.tab("Seed")
    explorer.type("seed", "5")
    status, image = _press(explorer, "generate", "image")
    assert status.startswith("Seed 5: EMA generator of") and "16x16" in status
    np.testing.assert_array_equal(image, pggan.load_generator(run_dir).generate(seeds=[5])[0])
    link = explorer.driver.find_element("css selector", "#image a[download]")
    assert link.get_attribute("download").endswith(".png")
    np.testing.assert_array_equal(explorer.image(link.get_attribute("href")), image)  # the download is the PNG shown


def test_the_random_button_and_the_truncation_slider(run_dir, explorer):
    explorer.tab("Seed")
    explorer.type("truncation", "0.5")
    try:
        status, image = _press(explorer, "random", "image")
        seed = int(explorer.value("seed"))
        assert status.startswith(f"Seed {seed}: EMA generator of") and "truncation 0.5" in status
        np.testing.assert_array_equal(image, pggan.load_generator(run_dir).generate(seeds=[seed], truncation=0.5)[0])
    finally:
        explorer.type("truncation", "1")


def test_checkpoint_and_network_switch(served, run_dir, explorer):
    session, _ = served
    early = _state(session, 8)
    explorer.tab("Seed")
    explorer.choose("state", early.name)
    explorer.choose("network", "raw")
    explorer.type("seed", "3")
    try:
        status, image = _press(explorer, "generate", "image")
        assert status.startswith("Seed 3: raw generator of") and early.name in status
        want = pggan.load_generator(run_dir, step=early.step, network="raw").generate(seeds=[3])[0]
        assert image.shape == (8, 8, 3)
        np.testing.assert_array_equal(image, want)
    finally:
        explorer.choose("state", session.states[-1].name)
        explorer.choose("network", "ema")


def test_interpolation_strip_and_video(run_dir, explorer, tmp_path):
    explorer.tab("Interpolation")
    explorer.type("interp_a", "1")
    explorer.type("interp_b", "2")
    explorer.type("frames", "6")
    status, strip = _press(explorer, "interp_button", "strip")
    assert status.startswith("Interpolation from seed 1 to 2")
    frames = pggan.load_generator(run_dir).interpolate([1, 2], 6, loop=False)
    np.testing.assert_array_equal(strip, np.concatenate(list(frames), axis=1))
    video = explorer.driver.find_element("css selector", "#video video").get_attribute("src")
    (tmp_path / "walk.mp4").write_bytes(explorer.fetch(video))
    info, decoded = media.read_video(tmp_path / "walk.mp4")
    assert info.num_frames == VIDEO_FRAMES and info.height == info.width >= media.MIN_VIDEO_SIDE
    assert len(list(decoded)) == VIDEO_FRAMES


@pytest.mark.parametrize(
    "tab,box,button,output,text,message",
    [
        ("Seed", "seed", "generate", "image", "-1", "seed must be a whole number from 0 to 4,294,967,295, got '-1'"),
        ("Seed", "seed", "generate", "image", "tulip", "seed must be a whole number from 0 to 4,294,967,295"),
        (
            "Grid",
            "grid_count",
            "grid_button",
            "grid",
            "0",
            f"the number of images must be a whole number from 1 to {MAX_GRID}",
        ),
        ("Grid", "grid_count", "grid_button", "grid", "10000", "got '10000'"),
        ("Interpolation", "frames", "interp_button", "strip", "1", "the number of strip images must be"),
    ],
)
def test_bad_input_gets_one_line_on_the_page_and_the_page_goes_on(explorer, tab, box, button, output, text, message):
    explorer.tab(tab)
    explorer.type(box, text)
    status, image = _press(explorer, button, output)
    assert status.startswith("Error: ") and message in status and "\n" not in status and "Traceback" not in status
    assert image is None
    explorer.type(box, "4" if box != "seed" else "6")
    status, image = _press(explorer, button, output)
    assert not status.startswith("Error") and image is not None


def test_a_grid_holds_the_images_of_consecutive_seeds(run_dir, explorer):
    explorer.tab("Grid")
    explorer.type("grid_seed", "10")
    explorer.type("grid_count", "5")
    _, grid = _press(explorer, "grid_button", "grid")
    images = pggan.load_generator(run_dir).generate(seeds=range(10, 15))
    cells = np.concatenate([images, np.zeros((1, 16, 16, 3), np.uint8)])  # 5 images in 2 rows of 3
    np.testing.assert_array_equal(grid, media.make_grid(cells, 2, 3))


def test_a_projection_latent_loads_and_moves_along_a_seed_direction(run_dir, explorer, tmp_path):
    z = np.random.default_rng(11).standard_normal((1, LATENT_SIZE)).astype(np.float32)
    np.save(tmp_path / "latent.npy", z)
    explorer.tab("Projection")
    explorer.upload("latent", str(tmp_path / "latent.npy"))
    explorer.type("edit_a", "1")
    explorer.type("edit_b", "2")
    explorer.type("strength", "1.5")
    status, edited = _press(explorer, "edit_button", "edited")
    assert status.startswith("Projection moved 1.5 x (seed 2 - seed 1)"), status
    z_a, z_b = latent_space.latents_for_seeds([1, 2], LATENT_SIZE)
    want = pggan.load_generator(run_dir).generate_from_latents(z + np.float32(1.5) * (z_b - z_a))[0]
    np.testing.assert_array_equal(edited, want)


def test_requests_run_what_was_compiled_at_start(served, tmp_path):
    session, _ = served
    compiled = generation.generator_program("cpu")._cache_size()
    latest, early = View(session.states[-1].name), View(_state(session, 8).name, network="raw", truncation=0.5)
    np.save(tmp_path / "latent.npy", np.ones((1, LATENT_SIZE), np.float32))
    assert session.seed_image(early, 3).shape == (8, 8, 3)
    assert session.grid(latest, 0, MAX_GRID).shape == (8 * 16, 8 * 16, 3)
    assert session.interpolation(early, 1, 2, 16)[0].shape == (8, 16 * 8, 3)
    assert session.edited_latent(latest, str(tmp_path / "latent.npy"), 1, 2, -3).shape == (16, 16, 3)
    assert generation.generator_program("cpu")._cache_size() == compiled


def test_requests_sent_at_once_through_gradios_client_are_all_answered(served, run_dir):
    from gradio_client import Client

    client = Client(served[1], verbose=False, analytics_enabled=False, download_files=False)
    view = [served[0].states[-1].name, "ema", 1.0, CYCLE]
    jobs = [client.submit(*view, "0", str(MAX_GRID), api_name="/grid") for _ in range(3)]
    jobs += [client.submit(*view, str(seed), api_name="/seed_image") for seed in (7, -1)]
    results = [job.result(timeout=300) for job in jobs]
    assert all(result[-1].startswith("Grid of 64 seeds from 0") for result in results[:3])
    assert results[3][-1].startswith("Seed 7:") and results[4][-1].startswith("Error: seed must be")
    assert results[4][0] is None


def test_classes_of_a_conditional_model_and_sources_of_one_state(tmp_path):
    config = load_recipe("tiny")
    config.model.label_size = 3
    write_checkpoints(tmp_path / "conditional", config, [(1000, 16, 1.0)])
    session = Session(str(tmp_path / "conditional"))
    generator = pggan.load_generator(str(tmp_path / "conditional"))
    name = session.states[0].name
    np.testing.assert_array_equal(session.seed_image(View(name, label="2"), 4), generator.generate([4], labels=2)[0])
    np.testing.assert_array_equal(session.seed_image(View(name, label=CYCLE), 4), generator.generate([4])[0])
    with pytest.raises(ExploreError, match="the class must be a whole number from 0 to 2, got '3'"):
        session.seed_image(View(name, label="3"), 4)

    pkl = tmp_path / "network-snapshot-000140.pkl"
    official_format.write_snapshot(
        pkl,
        dict(num_channels=3, resolution=16, label_size=0, fmap_base=64, fmap_max=16, latent_size=LATENT_SIZE),
        dict(num_channels=3, resolution=16, label_size=0, fmap_base=64, fmap_max=16),
        seed=3,
        lod=0.5,
    )
    official = Session(str(pkl))
    assert [(state.name, state.step, state.alpha) for state in official.states] == [(f"{pkl.name}, 16x16", None, 0.5)]
    assert official.refresh() == []  # one state, for good
    view = View(official.states[0].name, network="raw", truncation=0.7)
    np.testing.assert_array_equal(
        official.seed_image(view, 9), pggan.load_generator(str(pkl), network="raw").generate([9], truncation=0.7)[0]
    )
    np.save(tmp_path / "wrong.npy", np.zeros(3))
    with pytest.raises(ExploreError, match=r"wrong.npy holds float64 \(3,\); this generator needs one finite latent"):
        official.edited_latent(view, str(tmp_path / "wrong.npy"), 1, 2, 0.5)
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(ExploreError, match="text.npy is not a NumPy .npy file"):
        official.edited_latent(view, str(tmp_path / "text.npy"), 1, 2, 0.5)


def test_reloading_the_page_lists_the_checkpoints_written_since_it_started(tmp_path):
    config, workdir = load_recipe("tiny"), tmp_path / "growing"
    write_checkpoints(workdir, config, [(1000, 8, 1.0)])
    session = Session(str(workdir))
    served = page.serve(page.build(session), page.listen(0))
    try:
        with browser.ExplorerPage(served.url) as opened:

            def listed():
                return [label.text.strip() for label in opened.driver.find_elements("css selector", "#state label")]

            assert len(listed()) == 1
            write_checkpoints(workdir, config, [(2000, 16, 1.0)])  # as a training run going on would
            opened.driver.refresh()
            deadline = time.monotonic() + 120
            while len(listed()) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert listed() == [state.name for state in session.states]
            assert [state.resolution for state in session.states] == [8, 16]
            assert session.refresh() == []  # nothing new: nothing listed twice
            checked = opened.driver.find_elements("css selector", "#state input:checked")
            assert [box.get_attribute("value") for box in checked] == [session.states[-1].name]
    finally:
        served.close()
        session.close()
    np.testing.assert_array_equal(
        session.seed_image(View(session.states[-1].name), 3), pggan.load_generator(str(workdir)).generate([3])[0]
    )


def test_the_program_serves_the_page_and_refuses_in_one_line(run_dir, monkeypatch, capsys):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pggan.cli.explore", f"--workdir={run_dir}", f"--port={port}"],
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in server.stdout:  # until the address, or everything the program said before it stopped
            lines.append(line)
            if "is serving" in line:
                break
        assert f"pggan-explore is serving http://127.0.0.1:{port}/" in "".join(lines), "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as response:
            assert response.status == 200 and "pggan explorer" in response.read().decode()
        # The same port again, from this process: one line.
        assert tool_support.run_main("explore", f"--workdir={run_dir}", f"--port={port}") == 1
        assert "choose another --port" in capsys.readouterr().err
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert tool_support.run_main("explore", f"--workdir={run_dir}", "--resolution=8") == 1
    assert "--resolution does not apply to pggan-explore" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the extra were not installed
    assert tool_support.run_main("explore", f"--workdir={run_dir}") == 1
    error = capsys.readouterr().err.strip()  # the message itself: tests/test_dependencies.py
    assert error.startswith("error: pggan-explore") and "pip install -e '.[explore]'" in error and "\n" not in error


def test_a_missing_chromium_is_named_with_the_packages_to_install(monkeypatch):
    monkeypatch.setattr(browser, "CHROMIUM", os.path.join(REPO, "no-such-chromium"))
    with pytest.raises(browser.BrowserError, match="apt-get install -y chromium chromium-driver"):
        browser.check_chromium()


def test_served_pictures_and_videos_do_not_pile_up(served):
    from gradio_client import Client

    session = served[0]
    quick = page.serve(page.build(session, cache_seconds=1), page.listen(0))  # Gradio's cache emptied each second
    try:
        client = Client(quick.url, verbose=False, analytics_enabled=False, download_files=False)
        picture = client.predict(session.states[-1].name, "ema", 1.0, CYCLE, "7", api_name="/seed_image")[0]["path"]
        assert os.path.isfile(picture)
        deadline = time.monotonic() + 60
        while os.path.exists(picture) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not os.path.exists(picture)
    finally:
        quick.close()
    videos = [session.interpolation(View(session.states[-1].name), a, a + 1, 2)[1] for a in (1, 3, 5)]
    assert not os.path.exists(videos[0]) and all(os.path.isfile(video) for video in videos[1:])
