r"""Latency of the explorer page in a real browser: from pressing Generate to the image on the page.

Starts pggan-explore's page on a free port of 127.0.0.1 against --workdir (in this process), opens it in
Debian's headless Chromium (`pggan.explore.browser`, as tests/test_explore.py does), presses Generate once
to warm up, then --presses times with seeds 1, 2, ..., and prints the median and the maximum, measured by
the page's own clock from the click until the new image has loaded, and the median time the server spent
drawing (the status line's figure; the rest is Gradio's queue, the PNG and the browser). Needs the explore
and test extras (Gradio, Selenium) and `apt-get install -y chromium chromium-driver`.

  python tools/explore_latency.py --workdir=runs/quickstart --presses=10
  # also the README's screenshot of the page (the grid of seeds 0-31 of the latest checkpoint)
  python tools/explore_latency.py --workdir=runs/quickstart --screenshot=docs/explorer.png

Results print as lines and go to --json with the date, the command, the device, the versions and the load.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import statistics
import sys
import time

import jax
from absl import flags

from pggan.cli.runner import UsageError, program_main, run_program
from pggan.explore import browser, page
from pggan.explore.session import Session

_WORKDIR = flags.DEFINE_string("workdir", None, "The source to explore: anything pggan.load_generator takes.")
_PRESSES = flags.DEFINE_integer("presses", 10, "Timed presses of Generate (after one warm-up press).", lower_bound=1)
_SCREENSHOT = flags.DEFINE_string(
    "screenshot", "", "Also write a PNG of the page (1280x1000 pixels) showing a grid of 32 seeds, after the presses."
)
_JSON = flags.DEFINE_string("json", "", "Write the results, the command and the environment to this JSON file.")


def _environment() -> dict:
    import gradio
    import selenium

    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "device": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
        "cpu_cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "gradio": gradio.__version__,
        "selenium": selenium.__version__,
        "chromium": os.popen(f"{browser.CHROMIUM} --version 2>/dev/null").read().strip(),
    }


def run() -> None:
    if not _WORKDIR.value:
        raise UsageError("--workdir is required: the run (or export, or .pkl) to explore")
    page.gradio()
    browser.check_chromium()
    started = time.perf_counter()
    session = Session(_WORKDIR.value)
    app = page.build(session)
    served = page.serve(app, page.listen(0))
    print(
        f"Page ready in {time.perf_counter() - started:.1f} s ({session.compile_seconds:.1f} s loading and compiling)"
    )
    try:
        with browser.ExplorerPage(served.url, height=1000) as explorer:
            explorer.type("seed", "0")
            warm_up, _, _ = explorer.press("generate", "image")
            seconds, drawing = [], []
            for seed in range(1, _PRESSES.value + 1):
                explorer.type("seed", str(seed))
                elapsed, status, _ = explorer.press("generate", "image")
                seconds.append(elapsed)
                drawing.append(int(re.search(r"; (\d+) ms \(\d+\)\.$", status)[1]))
            if _SCREENSHOT.value:
                explorer.tab("Grid")
                explorer.type("grid_count", "32")
                explorer.press("grid_button", "grid")
                time.sleep(1)  # let the page settle (fonts, layout) before the picture
                explorer.screenshot(_SCREENSHOT.value)
                print(f"Wrote {_SCREENSHOT.value}.")
    finally:
        served.close()
        session.close()
    results = {
        "workdir": _WORKDIR.value,
        "resolution": session.states[-1].resolution,
        "warm_up_ms": 1000 * warm_up,
        "median_ms": 1000 * statistics.median(seconds),
        "max_ms": 1000 * max(seconds),
        "presses_ms": [1000 * s for s in seconds],
        "drawing_median_ms": statistics.median(drawing),
    }
    environment = _environment()
    side = results["resolution"]
    print(
        f"Generate -> image in the browser, {len(seconds)} presses at {side}x{side}: median "
        f"{results['median_ms']:.0f} ms, max {results['max_ms']:.0f} ms (warm-up {results['warm_up_ms']:.0f} ms; the "
        f"server's drawing, in the status line, median {results['drawing_median_ms']:.0f} ms); "
        f"{environment['device']}, load average {environment['load_average'][0]:.2f}"
    )
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({**environment, **results}, f, indent=1)


main = program_main(run)

if __name__ == "__main__":
    run_program(main, __name__)
