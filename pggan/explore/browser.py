"""The explorer page in a real browser: Debian's headless Chromium driven by Selenium (the `test` extra).

Used by tests/test_explore.py and tools/explore_latency.py. Chromium runs with a fresh profile and every
background service off (no network here: without those flags its connections pile up). What a user does
is done the user's way: typing into boxes, clicking radio labels, tabs and buttons, choosing a file. A
press waits, inside the page, until the status line answers it (each answer is numbered, so two equal
answers differ) and its image has loaded, and reports that time as measured by the page's own clock.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import tempfile

import numpy as np
from PIL import Image

from pggan import dependencies
from pggan.errors import UserError

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
INSTALL = "apt-get install -y chromium chromium-driver"

# arguments: button id, output id ('' = none), timeout in ms. Clicks the button, then polls every
# millisecond until #status differs from before the click and (unless the answer is an error) the output's
# image has loaded. Returns [milliseconds from the click, status text, image address or null].
_PRESS = """
const [button, output, timeoutMs, done] = arguments;
const status = () => document.querySelector('#status').innerText.trim();
const image = () => output ? document.querySelector('#' + output + ' img') : null;
const before = status();
const start = performance.now();
document.querySelector('#' + button).click();
(function poll() {
  const now = performance.now(), text = status(), img = image();
  const answered = text !== before && text !== '';
  const error = text.startsWith('Error');
  if (answered && (error || !output || (img && img.complete && img.naturalWidth > 0))) {
    done([now - start, text, error || !img ? null : img.src]);
  } else if (now - start > timeoutMs) {
    done([now - start, 'timed out; status: ' + text, null]);
  } else {
    setTimeout(poll, 1);
  }
})();
"""

# argument: an address on the page's server. Returns its bytes, base64-encoded.
_FETCH = """
const [url, done] = arguments;
fetch(url).then(r => r.arrayBuffer()).then(buffer => {
  let text = '';
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  done(btoa(text));
});
"""


class BrowserError(UserError):
    """Chromium or its driver is missing, or the page did not answer; the message says what to do."""


def check_chromium() -> None:
    """BrowserError naming the Debian packages when /usr/bin/chromium or /usr/bin/chromedriver is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        raise BrowserError(f"{' and '.join(missing)} not found: install Chromium and its driver ({INSTALL})")


class ExplorerPage:
    """The explorer at `url` open in a headless Chromium; use as a context manager (closes the browser).

    Element ids are those of page.py (#seed, #generate, #image, ...).
    """

    def __init__(self, url: str, *, width: int = 1280, height: int = 1400, timeout: float = 120):
        webdriver = dependencies.require("selenium.webdriver", "driving the explorer page in a browser")
        check_chromium()
        self._profile = tempfile.mkdtemp(prefix="pggan-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
        self.driver.set_script_timeout(timeout)
        self.timeout = timeout
        self.driver.get(url)
        self._wait_for("#generate")

    def __enter__(self) -> ExplorerPage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _wait_for(self, selector: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        located = expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector))
        return WebDriverWait(self.driver, self.timeout, poll_frequency=0.05).until(located)

    def type(self, element_id: str, text: str) -> None:
        """Replaces the text of box #element_id (a textbox, or a slider's number box) as typed, then Tab."""
        from selenium.webdriver.common.keys import Keys

        box = self._wait_for(f"#{element_id} textarea, #{element_id} input")  # a slider's number box comes first
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        box.send_keys(str(text), Keys.TAB)

    def choose(self, element_id: str, option: str) -> None:
        """Clicks the label `option` of radio group #element_id."""
        from selenium.webdriver.common.by import By

        self._wait_for(f"#{element_id} label")
        for label in self.driver.find_elements(By.CSS_SELECTOR, f"#{element_id} label"):
            if label.text.strip() == option:
                label.click()
                return
        raise BrowserError(f"#{element_id} has no option {option!r}")

    def tab(self, name: str) -> None:
        """Opens the tab called `name`."""
        from selenium.webdriver.common.by import By

        for button in self.driver.find_elements(By.CSS_SELECTOR, "button[role=tab]"):
            if button.text.strip() == name:
                button.click()
                self._wait_for("[role=tabpanel]")
                return
        raise BrowserError(f"the page has no tab {name!r}")

    def upload(self, element_id: str, path: str) -> None:
        """Chooses the file `path` in file box #element_id and waits until it is uploaded."""
        self._wait_for(f"#{element_id} input[type=file]").send_keys(os.path.abspath(path))
        self._wait_for(f"#{element_id} .file-preview, #{element_id} table")

    def press(self, button_id: str, output_id: str = "") -> tuple[float, str, str | None]:
        """Clicks #button_id and waits for the answer: (seconds from the click until the status line changed
        and #output_id's image loaded, measured in the page; the status text; the image's address, None
        after an error)."""
        milliseconds, status, src = self.driver.execute_async_script(_PRESS, button_id, output_id, self.timeout * 1000)
        if status.startswith("timed out"):
            raise BrowserError(f"the page did not answer #{button_id} within {self.timeout:g} s ({status})")
        return milliseconds / 1000, status, src

    def fetch(self, url: str) -> bytes:
        """The bytes at `url`, fetched by the page (the file a download button saves)."""
        return base64.b64decode(self.driver.execute_async_script(_FETCH, url))

    def image(self, url: str) -> np.ndarray:
        """The PNG at `url` as uint8 [H, W, C] (C = 3, or 1 for greyscale)."""
        image = np.asarray(Image.open(io.BytesIO(self.fetch(url))))
        return image[..., None] if image.ndim == 2 else image

    def value(self, element_id: str) -> str:
        """The text in box #element_id."""
        return self._wait_for(f"#{element_id} textarea, #{element_id} input").get_attribute("value")

    def resources(self) -> list[str]:
        """The address of every resource the page loaded (documents, scripts, styles, fonts, images)."""
        return [self.driver.current_url] + self.driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )

    def screenshot(self, path: str) -> None:
        """A PNG of the whole page as the browser draws it."""
        self.driver.save_screenshot(path)
