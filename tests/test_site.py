"""The documentation site: built with `mkdocs build --strict` (a broken link or API reference fails it),
and its leaderboard page opened in a real headless browser (Debian's chromium), whose tables and
pictures must render.

Without mkdocs or chromium the tests are skipped with the reason; CI sets AEFRAME_REQUIRE_BROWSER=1,
which turns that skip into a failure.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _needs(what: str) -> None:
    message = f"needs {what}"
    if os.environ.get("AEFRAME_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{message} (AEFRAME_REQUIRE_BROWSER=1)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if find_spec("mkdocs") is None or find_spec("mkdocstrings") is None:
        _needs("the docs extra: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                           capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-3000:]
    return out


def test_the_site_builds_strictly_with_every_page_and_the_api_reference(site):
    for page in ("index", "concepts", "leaderboard", "techniques", "datasets", "metrics", "plugins", "distributed",
                 "speed", "results", "api", "architecture", "cite", "cli"):
        assert (site / ("index.html" if page == "index" else f"{page}/index.html")).is_file(), page
    api = (site / "api" / "index.html").read_text()
    import aeframe
    import aeframe.executors

    # Every exported name has its entry, rendered from its docstring.
    for name, module in {**aeframe._EXPORTS, **aeframe.executors._EXPORTS}.items():
        assert f'id="{module}.{name}"' in api, name


def test_the_command_line_reference_is_generated_from_the_commands_themselves(site):
    # No CLI reference page existed; a hand-written one would drift from --help.
    from aeframe.cli import cli

    page = html.unescape((site / "cli" / "index.html").read_text())
    for name, command in cli.commands.items():
        assert f"aeframe {name}" in page, name
        for param in command.params:
            for option in [*param.opts, *param.secondary_opts]:
                if option.startswith("--") and option != "--help":
                    assert option in page, f"aeframe {name} {option}"


PROBE = """<!doctype html><html><body><pre id="result">waiting</pre>
<iframe id="page" src="/leaderboard/" width="1400" height="900"></iframe>
<script>
document.getElementById("page").addEventListener("load", () => {
  const doc = document.getElementById("page").contentDocument;
  const settle = () => {
    const images = [...doc.images].map(i => ({src: i.getAttribute("src"), complete: i.complete,
                                               width: i.naturalWidth, height: i.naturalHeight}));
    if (images.some(i => !i.complete)) { setTimeout(settle, 100); return; }
    const tables = [...doc.querySelectorAll("table")].map(t => ({rows: t.rows.length,
                                                                  columns: t.rows[0] ? t.rows[0].cells.length : 0,
                                                                  visible: t.getBoundingClientRect().width > 0}));
    document.getElementById("result").textContent = JSON.stringify({title: doc.title, tables, images});
  };
  settle();
});
</script></body></html>"""


def test_the_leaderboard_page_renders_its_tables_and_pictures_in_a_browser(site):
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if browser is None:
        _needs("a headless browser: apt-get install chromium")
    (site / "_probe.html").write_text(PROBE)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/_probe.html"
        shown = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                "--virtual-time-budget=20000", "--dump-dom", url],
                               capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    found = re.search(r'<pre id="result">(.*?)</pre>', shown.stdout, re.S)
    assert found and found.group(1) != "waiting", shown.stderr[-2000:]
    page = json.loads(html.unescape(found.group(1)))
    assert page["title"].startswith("Leaderboard")
    # The tables: provenance, protocol, each dataset's comparison and time-to-quality tables.
    committed = (ROOT / "docs" / "leaderboard.md").read_text()
    expected = len(re.findall(r"^\|[-:| ]+\|$", committed, re.M))
    assert len(page["tables"]) == expected >= 4
    assert all(t["visible"] and t["rows"] >= 2 and t["columns"] >= 2 for t in page["tables"])
    # Every picture the page links loaded, as an image with real pixels.
    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", committed)
    assert len(page["images"]) == len(linked) >= 2
    assert all(i["complete"] and i["width"] > 100 and i["height"] > 100 for i in page["images"]), page["images"]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test's output is the browser's, not the server's log
        pass
