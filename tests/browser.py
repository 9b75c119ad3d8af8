"""Open an HTML page in headless Chromium (Debian's ``chromium``; ``scripts/setup-browser.sh``) and
read back what its scripts did, without DevTools: a probe script, put first in the page's head,
records every uncaught error and rejected promise, and once the page has loaded and its timers run
writes a JSON summary into the DOM, which ``--dump-dom`` prints. Chromium's console log (stderr) is
kept too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# the probe: errors from the start; after load, the rendered plotly figures and each figure's title
# box against its own width
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
window.addEventListener("unhandledrejection", function (e) {
  window.__errors.push("unhandled rejection: " + String(e.reason));
});
window.addEventListener("load", function () {
  setTimeout(function () {
    var plots = Array.prototype.slice.call(document.querySelectorAll(".js-plotly-plot"));
    var figures = plots.map(function (p) {
      var svg = p.querySelector(".main-svg"), title = p.querySelector(".gtitle");
      var box = svg ? svg.getBoundingClientRect() : null, t = title ? title.getBoundingClientRect() : null;
      return {id: p.id, traces: (p.data || []).length, svg: !!svg,
              left: box && box.left, right: box && box.right,
              title_left: t && t.left, title_right: t && t.right};
    });
    var out = document.createElement("pre");
    out.id = "drift-probe";
    out.textContent = JSON.stringify({errors: window.__errors, figures: figures,
                                      divs: document.querySelectorAll(".drift-figure").length});
    document.body.appendChild(out);
  }, 1000);
});
</script>"""


def need_chromium() -> str:
    """Chromium's path; the test is skipped without it, unless ``DRIFT_REQUIRE_BROWSER=1`` (set by
    ``scripts/test.sh``, which installs it), where its absence fails."""
    if CHROMIUM is None:
        if os.environ.get("DRIFT_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed (scripts/setup-browser.sh installs it)")
        pytest.skip("chromium is not installed (scripts/setup-browser.sh installs it)")
    return CHROMIUM


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    base = [need_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    base += ["--disable-extensions", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=timeout)


def open_page(page: Path, tmp: Path, *, timeout: int = 180) -> tuple[dict, str]:
    """Load ``page`` (with the probe put first in its head, as a copy in ``tmp``) and return the
    probe's summary ``{"errors", "figures", "divs"}`` and Chromium's console log."""
    html = page.read_text(encoding="utf-8")
    head = re.search(r"<head[^>]*>", html)
    assert head is not None, f"{page} has no <head>"
    probed = tmp / f"probed-{page.name}"
    probed.write_text(html[: head.end()] + PROBE + html[head.end() :], encoding="utf-8")
    done = _run(["--virtual-time-budget=20000", "--dump-dom", probed.as_uri()], timeout)
    found = re.search(r'<pre id="drift-probe">(.*?)</pre>', done.stdout, re.S)
    assert found is not None, f"the page never finished loading; chromium said:\n{done.stderr[-3000:]}"
    text = (
        found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )
    return json.loads(text), done.stderr


def console_errors(log: str) -> list[str]:
    """The console lines of Chromium's log that report a JavaScript error."""
    return [
        line for line in log.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)
    ]


def screenshot(page: Path, png: Path, *, width: int = 1200, height: int = 3000, timeout: int = 180) -> Path:
    """A PNG of ``page`` as Chromium draws it at ``width`` x ``height``."""
    done = _run(
        [
            f"--window-size={width},{height}",
            "--virtual-time-budget=20000",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        timeout,
    )
    assert png.is_file(), done.stderr[-3000:]
    return png
