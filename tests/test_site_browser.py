"""The report site in a real headless Chromium: pages render, images load, sorting and filtering work, and
hostile strings stay text. No console error is tolerated.

Chromium is driven over the DevTools protocol through a pipe (`--remote-debugging-pipe`: NUL-separated JSON
on file descriptors 3 and 4), so nothing beyond the standard library is needed and no port is raced for.
Without /usr/bin/chromium the module is skipped, except under CI, where it fails (CI installs Chromium with
scripts/install_browser.sh).
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from records import SHA_A, SHA_B, hostile_record, make_record

from bot.scan_record import Verdict
from bot.site.build import SkippedRevision, build_site, repo_page_path, revision_page_path
from bot.site.serve import SiteServer

CHROMIUM = Path("/usr/bin/chromium")
CALL_TIMEOUT = 60.0  # seconds; generous: the test machine's CPUs are shared with model training
SHA_C = "c" * 40


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require_chromium() -> None:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return
    if _in_ci():
        pytest.fail(f"{CHROMIUM} is missing under CI: run scripts/install_browser.sh before the tests")
    pytest.skip(f"{CHROMIUM} is missing (install it with scripts/install_browser.sh); under CI this fails")


class CdpError(RuntimeError):
    pass


class Chromium:
    """A headless Chromium and its DevTools connection over a pipe; one request at a time, events queued."""

    def __init__(self, profile_dir: Path, log_file: Path) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        args = [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile_dir}", "--remote-debugging-pipe", "--window-size=1280,900",
            "--hide-scrollbars", "--disable-dev-shm-usage", "about:blank",
        ]
        # The DevTools pipe must be fds 3 (commands in) and 4 (replies out) in the browser: bash places them
        # (dash cannot redirect from a descriptor above 9).
        script = f'exec "$@" 3<&{to_browser_read} 4>&{from_browser_write}'
        self._log = log_file.open("wb")
        self.process = subprocess.Popen(
            ["/bin/bash", "-c", script, "bash", *args], pass_fds=(to_browser_read, from_browser_write),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(remaining, 0))
            if not ready:
                raise TimeoutError("no DevTools message from Chromium in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise CdpError(f"Chromium closed the DevTools pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None) -> dict:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode("utf-8") + b"\0")
        deadline = time.monotonic() + CALL_TIMEOUT
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, *, session: str, after: int) -> dict[str, Any]:
        """The first `method` event of `session` at or after events[after]."""
        deadline = time.monotonic() + CALL_TIMEOUT
        index = after
        while True:
            for event in self.events[index:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            index = len(self.events)
            message = self._read_message(deadline)
            if "method" in message:
                self.events.append(message)

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.process.wait(timeout=15)
        except (CdpError, TimeoutError, OSError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)  # the group this test started, nothing else
            self.process.wait(timeout=15)
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)
            self._log.close()


class Tab:
    """One page target, attached in flat mode (commands carry its sessionId)."""

    def __init__(self, browser: Chromium) -> None:
        self.browser = browser
        self.target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call("Target.attachToTarget", {"targetId": self.target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.viewport(1280, 900)
        self._page_start = len(browser.events)

    def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict:
        return self.browser.call(method, params, session=self.session)

    def goto(self, url: str) -> None:
        self._page_start = len(self.browser.events)
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CdpError(f"navigation to {url} failed: {result['errorText']}")
        self.browser.wait_for("Page.loadEventFired", session=self.session, after=self._page_start)

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1}
        data = self.call("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def page_events(self) -> list[dict[str, Any]]:
        return [event for event in self.browser.events[self._page_start:] if event.get("sessionId") == self.session]

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, failed loads and dialogs since the last navigation."""
        found = []
        for event in self.page_events():
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {[arg.get('value') for arg in params.get('args', [])]}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Page.javascriptDialogOpening":
                found.append(f"dialog: {params.get('message')}")
        return found

    def visible_rows(self, table_id: str) -> int:
        return self.eval(f"document.querySelectorAll('#{table_id} tbody tr:not([hidden])').length")

    def column(self, table_id: str, index: int) -> list[str]:
        return self.eval(f"Array.from(document.querySelectorAll('#{table_id} tbody tr:not([hidden])'))"
                         f".map(row => row.cells[{index}].textContent.trim())")

    def images_loaded(self) -> list[dict[str, Any]]:
        return self.eval("Array.from(document.images).map(i => ({src: i.getAttribute('src'), "
                         "ok: i.complete && i.naturalWidth > 0}))")


# -- fixtures ---------------------------------------------------------------------------------------------

REPOS = {  # repo_id -> (sha, created_at, verdict) of each audit
    "acme/clip-vit-b": [(SHA_B, "2025-03-01T10:00:00Z", Verdict.CLEAN),
                        (SHA_A, "2025-03-02T10:00:00Z", Verdict.BACKDOOR)],
    "beta-lab/longclip-ft": [(SHA_A, "2025-02-11T09:30:00Z", Verdict.NATURAL_ONLY)],
    "gamma/siglip-small": [(SHA_A, "2025-02-20T08:00:00Z", Verdict.CLEAN)],
    "delta/no-anchor": [(SHA_C, "2025-01-15T12:00:00Z", Verdict.INCONCLUSIVE)],
}
HOSTILE_REPO = "mallory/evil-clip"
SKIPPED = SkippedRevision("bob/legacy-clip-bin", SHA_A, "2025-01-10T00:00:00Z",
                          "pickle-only: only pickle weights (pytorch_model.bin, open_clip_pytorch_model.bin); "
                          "the bot never unpickles")
ROWS = len(REPOS) + 2  # the audited repos, the hostile one, and one the bot could not scan


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    _require_chromium()
    records = [(repo_id, sha, when, make_record(verdict, model=repo_id, revision=sha))
               for repo_id, audits in REPOS.items() for sha, when, verdict in audits]
    records.append((HOSTILE_REPO, SHA_A, "2025-03-03T00:00:00Z", hostile_record(model=HOSTILE_REPO)))
    records.append(('x/"><img src=x onerror=alert(1)>', SHA_A, "2025-03-04T00:00:00Z", make_record(Verdict.CLEAN)))
    out = tmp_path_factory.mktemp("site")
    summary = build_site(records, out, skipped=[SKIPPED])
    assert summary.repos == len(REPOS) + 1 and len(summary.refused) == 1 and summary.not_scanned == 1
    return out


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[SiteServer]:
    with SiteServer(site) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Chromium]:
    _require_chromium()
    work = tmp_path_factory.mktemp("chromium")
    chromium = Chromium(work / "profile", work / "chromium.log")
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture()
def tab(browser: Chromium) -> Iterator[Tab]:
    page = Tab(browser)
    yield page
    browser.call("Target.closeTarget", {"targetId": page.target})


# -- tests ------------------------------------------------------------------------------------------------


def test_index_renders_every_repo_with_loaded_badges(tab: Tab, server: SiteServer, tmp_path: Path) -> None:
    tab.goto(server.url + "index.html")
    tab.screenshot(tmp_path / "index.png")
    assert tab.eval("document.title").startswith("Audited repositories")
    assert tab.visible_rows("repos") == ROWS
    assert tab.eval("document.getElementById('shown-count').textContent") == f"{ROWS} of {ROWS} shown"
    counts = tab.eval("Object.fromEntries(Array.from(document.querySelectorAll('[data-verdict-count]'))"
                      ".map(e => [e.dataset.verdictCount, Number(e.textContent)]))")
    assert counts == {"backdoor": 2, "natural-only": 1, "clean": 1, "inconclusive": 1, "not-scanned": 1}
    skipped = tab.eval("document.querySelector('#repos tr[data-verdict=\"not-scanned\"]').textContent")
    assert SKIPPED.repo_id in skipped and "the bot never unpickles" in skipped
    images = tab.images_loaded()
    assert images and all(image["ok"] for image in images), images
    # Newest first; the refused repo id appears nowhere.
    assert tab.column("repos", 0)[:2] == [HOSTILE_REPO, "acme/clip-vit-b"]
    assert "onerror" not in tab.eval("document.body.textContent")
    assert tab.problems() == []


def test_index_filter_and_sort_in_the_page(tab: Tab, server: SiteServer) -> None:
    tab.goto(server.url + "index.html")
    set_filter = ("(() => {{ const box = document.getElementById('filter'); box.value = {0};"
                  " box.dispatchEvent(new Event('input', {{bubbles: true}})); }})()")
    tab.eval(set_filter.format(json.dumps("acme")))
    assert tab.column("repos", 0) == ["acme/clip-vit-b"]
    tab.eval(set_filter.format(json.dumps("CLEAN")))  # matches the verdict too, case-insensitively
    assert tab.column("repos", 0) == ["gamma/siglip-small"]
    tab.eval(set_filter.format(json.dumps("no such repo")))
    assert tab.visible_rows("repos") == 0
    assert tab.eval("document.getElementById('no-match').hidden") is False
    tab.eval(set_filter.format(json.dumps("")))
    assert tab.visible_rows("repos") == ROWS

    tab.eval("(() => { const s = document.getElementById('verdict-filter'); s.value = 'backdoor';"
             " s.dispatchEvent(new Event('change', {bubbles: true})); })()")
    assert sorted(tab.column("repos", 0)) == ["acme/clip-vit-b", HOSTILE_REPO]
    assert tab.eval("document.getElementById('shown-count').textContent") == f"2 of {ROWS} shown"
    tab.eval("document.querySelector('[data-verdict-filter=\"natural-only\"]').click()")
    assert tab.column("repos", 0) == ["beta-lab/longclip-ft"]
    tab.eval("document.querySelector('[data-verdict-filter=\"natural-only\"]').click()")  # toggles off
    assert tab.visible_rows("repos") == ROWS

    repo_header = "document.querySelectorAll('#repos thead th button')[0].click()"
    tab.eval(repo_header)
    ascending = tab.column("repos", 0)
    assert ascending == sorted(ascending, key=str.lower)
    assert tab.eval("document.querySelectorAll('#repos thead th')[0].getAttribute('aria-sort')") == "ascending"
    tab.eval(repo_header)
    assert tab.column("repos", 0) == ascending[::-1]
    tab.eval("document.querySelectorAll('#repos thead th button')[2].click()")  # verdict: most severe first
    verdicts = tab.eval("Array.from(document.querySelectorAll('#repos tbody tr')).map(r => r.dataset.verdict)")
    assert verdicts == ["backdoor", "backdoor", "natural-only", "clean", "inconclusive", "not-scanned"]
    assert tab.problems() == []


def test_revision_page_shows_the_evidence(tab: Tab, server: SiteServer, tmp_path: Path) -> None:
    tab.goto(server.url + revision_page_path("acme/clip-vit-b", SHA_A))
    tab.screenshot(tmp_path / "revision.png")
    assert tab.eval("document.querySelector('.verdict-text').textContent") == "backdoor"
    assert tab.eval("document.querySelectorAll('table.checks tbody tr').length") == 4
    assert tab.eval("document.querySelectorAll('table.checks tr.backdoor-like').length") == 3
    assert tab.eval("document.querySelectorAll('table.checks tr.evidence').length") == 1  # the landscape
    assert tab.eval("document.querySelectorAll('table.triggers tr.confirmed').length") == 1
    images = tab.images_loaded()
    plots = [image for image in images if image["src"].endswith(".png")]
    assert len(plots) == 3 and all(image["ok"] for image in images), images
    record = json.loads(tab.eval("document.getElementById('record-json').textContent"))
    assert record["verdict"] == "backdoor" and record["revision"] == SHA_A
    linked = tab.eval("document.getElementById('json-link').href")
    with urllib.request.urlopen(linked, timeout=10) as response:  # the page's CSP forbids fetch(), rightly
        assert response.headers["Content-Type"] == "application/json"
        assert json.loads(response.read()) == record
    assert tab.problems() == []


def test_revision_without_landscape_skips_that_plot(tab: Tab, server: SiteServer) -> None:
    tab.goto(server.url + revision_page_path("gamma/siglip-small", SHA_A))
    assert tab.eval("document.querySelector('#plot-landscape img')") is None
    assert "Not available" in tab.eval("document.querySelector('#plot-landscape').textContent")
    images = tab.images_loaded()
    assert len([image for image in images if image["src"].endswith(".png")]) == 2
    assert all(image["ok"] for image in images), images
    assert tab.problems() == []


def test_hostile_strings_stay_text(tab: Tab, server: SiteServer, tmp_path: Path) -> None:
    tab.goto(server.url + revision_page_path(HOSTILE_REPO, SHA_A))
    tab.screenshot(tmp_path / "hostile.png")
    assert tab.eval("document.scripts.length") == 1
    assert tab.eval("document.querySelectorAll('[onerror], [onload], [onclick], iframe, object, embed').length") == 0
    captions = tab.eval("Array.from(document.querySelectorAll('table.captions td.text')).map(td => td.textContent)")
    assert "<script>alert(1)</script>" in captions
    tokens = tab.eval("Array.from(document.querySelectorAll('code.token')).map(c => c.textContent)")
    assert "<script>alert(1)</script>" in tokens
    # Bidi controls are shown, not obeyed.
    assert "abc\\u202edcba\\u2066x\\u2069" in captions
    assert tab.problems() == []


def test_site_works_from_file_urls(tab: Tab, site: Path) -> None:
    tab.goto((site / "index.html").as_uri())
    assert tab.visible_rows("repos") == ROWS
    assert all(image["ok"] for image in tab.images_loaded())
    tab.eval("document.querySelector('[data-verdict-filter=\"clean\"]').click()")
    assert tab.column("repos", 0) == ["gamma/siglip-small"]
    tab.goto((site / revision_page_path("beta-lab/longclip-ft", SHA_A)).as_uri())
    images = tab.images_loaded()
    assert len(images) == 4 and all(image["ok"] for image in images), images
    assert tab.problems() == []


def test_repo_page_lists_its_revisions(tab: Tab, server: SiteServer, tmp_path: Path) -> None:
    tab.goto(server.url + repo_page_path("acme/clip-vit-b"))
    tab.screenshot(tmp_path / "repo.png")
    assert tab.column("revisions", 0) == [SHA_A[:12], SHA_B[:12]]  # newest first
    assert tab.eval("Array.from(document.querySelectorAll('#revisions tbody tr')).map(r => r.dataset.verdict)") == [
        "backdoor", "clean"]
    tab.eval("document.querySelectorAll('#revisions thead th button')[1].click()")  # scanned: oldest first
    assert tab.column("revisions", 0) == [SHA_B[:12], SHA_A[:12]]
    assert all(image["ok"] for image in tab.images_loaded())
    before_click = len(tab.browser.events)
    tab.eval("document.querySelector('#revisions tbody a').click()")
    tab.browser.wait_for("Page.loadEventFired", session=tab.session, after=before_click)
    assert tab.eval("location.pathname").endswith(f"/acme/clip-vit-b/{SHA_B}.html")
    assert tab.problems() == []


def test_problem_collection_sees_errors(tab: Tab, server: SiteServer) -> None:
    """Guards the `problems() == []` assertions above against passing blind."""
    tab.goto(server.url + "index.html")
    tab.eval("console.error('planted error')")
    tab.eval("new Promise(done => { const image = new Image(); image.onerror = done; image.src = 'missing.png';"
             " document.body.append(image); })")
    deadline = time.monotonic() + 10
    while len(tab.problems()) < 2 and time.monotonic() < deadline:
        tab.eval("new Promise(done => setTimeout(done, 100))")
    problems = tab.problems()
    assert any("planted error" in problem for problem in problems), problems
    assert any("404" in problem or "missing.png" in problem for problem in problems), problems


# Everything on the page, with its <details> opened, that reaches past the viewport's right edge, unless a
# box that scrolls or clips sideways (.table-scroll) holds it; and the page's own sideways scroll.
_OVERFLOWING = """(() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const width = document.documentElement.clientWidth;
  const held = el => { for (let p = el.parentElement; p; p = p.parentElement) {
    if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) return true; } return false; };
  const found = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if ((box.right > width + 0.5 || box.left < -0.5) && !held(el)) {
      found.push(`${el.tagName.toLowerCase()}.${el.className} ${Math.round(box.left)}..${Math.round(box.right)}`);
    }
  }
  if (document.documentElement.scrollWidth > width) found.push(`page ${document.documentElement.scrollWidth}px`);
  return found;
})()"""


def test_nothing_overflows_a_390_px_phone_screen(tab: Tab, server: SiteServer, tmp_path: Path) -> None:
    tab.viewport(390, 844, mobile=True)
    pages = ["index.html", repo_page_path("acme/clip-vit-b"), revision_page_path("acme/clip-vit-b", SHA_A),
             revision_page_path("acme/clip-vit-b", SHA_B), revision_page_path(HOSTILE_REPO, SHA_A)]
    for page in pages:
        tab.goto(server.url + page)
        assert tab.eval("document.documentElement.clientWidth") == 390
        assert tab.eval(_OVERFLOWING) == [], page
        assert tab.problems() == []
    tab.screenshot(tmp_path / "phone-revision.png")
    # On a phone the checks read as one card per check, each cell under its column's name.
    tab.goto(server.url + revision_page_path("acme/clip-vit-b", SHA_A))
    assert tab.eval("getComputedStyle(document.querySelector('table.checks thead')).display") == "none"
    assert tab.eval("getComputedStyle(document.querySelector('table.checks td'), '::before').content") == (
        '"What we looked for"')
    # The check sees an element that does overflow.
    tab.eval("document.querySelector('h1').style.width = '600px'")
    assert any(item.startswith("h1") for item in tab.eval(_OVERFLOWING))
