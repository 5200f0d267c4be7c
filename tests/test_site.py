"""The static report site: files and links, escaping of owner-controlled text, refused paths, badges, plots,
determinism, the Store entry point and the `site` commands. The in-browser behaviour is in test_site_browser.py.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import replace
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from records import HOSTILE_TEXT, SHA_A, SHA_B, hostile_record, make_record

from bot.errors import SkipReason, SkipRepo, UsageError
from bot.publish.render import badge_svg_url, report_page_url
from bot.scan_record import Landscape, ScanRecord, TargetCaption, TriggerCandidate, Verdict
from bot.site import SkippedRevision, build_from_store, build_site
from bot.site.badges import BADGE_STATES, badge_svg
from bot.site.build import TEMPLATES_DIR, build_environment, repo_page_path, revision_json_path, revision_page_path
from bot.site.plots import write_plots
from bot.site.serve import SiteServer
from bot.state.store import Store

SHA_C = "c" * 40
IMG_ONERROR = '"><img src=x onerror=alert(1)>'
SCRIPT = "<script>alert(1)</script>"
BASE_URL = "https://audit.example/reports"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def _records() -> list[tuple[str, str, str, ScanRecord]]:
    return [
        ("acme/clip-vit-b", SHA_B, "2025-03-01T10:00:00Z", make_record(Verdict.CLEAN, revision=SHA_B)),
        ("acme/clip-vit-b", SHA_A, "2025-03-02T10:00:00Z", make_record(Verdict.BACKDOOR)),
        ("beta-lab/longclip-ft", SHA_A, "2025-02-11T09:30:00Z", make_record(Verdict.NATURAL_ONLY)),
        ("delta/no-anchor", SHA_C, "2025-01-15T12:00:00Z", make_record(Verdict.INCONCLUSIVE, revision=SHA_C)),
        ("mallory/evil-clip", SHA_A, "2025-03-03T00:00:00Z", _very_hostile_record()),
    ]


def _very_hostile_record() -> ScanRecord:
    record = hostile_record(model=IMG_ONERROR)
    return replace(
        record,
        target_captions=[*record.target_captions, TargetCaption(IMG_ONERROR, 0.4)],
        triggers=[*record.triggers, TriggerCandidate(IMG_ONERROR, 99, 0.1, 0.1, 0.1, True)],
        notes=[*record.notes, IMG_ONERROR, "</pre></details><script>alert(2)</script>"],
        device=SCRIPT, family="<b>clip</b>", timings={**record.timings, SCRIPT: 1.0},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    summary = build_site(_records(), out, base_url=BASE_URL)
    assert summary.repos == 4 and summary.revisions == 5 and summary.refused == ()
    return out


def test_every_page_record_plot_and_badge_is_written(site: Path) -> None:
    for repo_id, sha, _, record in _records():
        assert (site / revision_page_path(repo_id, sha)).is_file()
        assert (site / repo_page_path(repo_id)).is_file()
        stored = ScanRecord.from_json((site / revision_json_path(repo_id, sha)).read_text(encoding="utf-8"))
        assert stored == record
        assert (site / repo_id / sha / "assimilation.png").read_bytes().startswith(b"\x89PNG")
    for state in BADGE_STATES:
        assert (site / "badges" / f"{state}.svg").is_file()
    assert (site / "index.html").is_file() and (site / "_static" / "site.js").is_file()


def test_every_local_link_resolves(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) == 1 + 4 + 5
    for page in pages:
        for tag, attrs in _parse(page).tags:
            for name in ("href", "src"):
                link = attrs.get(name)
                if link is None or link.startswith(("data:", "#")):
                    continue
                if link.startswith("https://"):
                    assert tag == "link" and attrs.get("rel") == "canonical", (page, link)
                    continue
                parts = urlsplit(link)
                assert not parts.scheme and not parts.netloc and not link.startswith("/"), (page, link)
                target = (page.parent / unquote(parts.path)).resolve()
                assert target.is_relative_to(site.resolve()) and target.is_file(), (page, link)


def test_index_lists_the_latest_verdict_of_each_repo(site: Path) -> None:
    page = _parse(site / "index.html")
    rows = [attrs for tag, attrs in page.tags if tag == "tr" and "data-verdict" in attrs]
    assert [row["data-verdict"] for row in rows] == ["backdoor", "backdoor", "natural-only", "inconclusive"]
    text = "".join(page.text)
    assert "acme/clip-vit-b" in text and SHA_A[:12] in text and "2025-03-02 10:00" in text


def test_paths_match_the_links_in_hub_posts(site: Path) -> None:
    for repo_id, sha, _, _ in _records():
        assert report_page_url(BASE_URL, repo_id=repo_id, sha=sha) == f"{BASE_URL}/{revision_page_path(repo_id, sha)}"
    for verdict in Verdict:
        assert badge_svg_url(BASE_URL, verdict).removeprefix(BASE_URL + "/") == f"badges/{verdict.value}.svg"
    page = (site / revision_page_path("acme/clip-vit-b", SHA_A)).read_text(encoding="utf-8")
    assert f'<link rel="canonical" href="{BASE_URL}/acme/clip-vit-b/{SHA_A}.html">' in page
    assert f"({BASE_URL}/badges/backdoor.svg)" in page


def test_owner_controlled_text_renders_as_text(site: Path) -> None:
    path = site / revision_page_path("mallory/evil-clip", SHA_A)
    html = path.read_text(encoding="utf-8")
    assert SCRIPT not in html and "<img src=x" not in html and "<b>" not in html and "alert(2)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page = _parse(path)
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts == [{"src": "../../_static/site.js", "defer": None}]
    assert not [attrs for _, attrs in page.tags if any(name.startswith("on") for name in attrs)]
    assert all(attrs["src"].endswith((".png", ".svg")) for tag, attrs in page.tags if tag == "img")
    text = "".join(page.text)
    for hostile in (SCRIPT, IMG_ONERROR, HOSTILE_TEXT["js_link"], "<b>clip</b>"):
        assert hostile in text
    assert "abc\\u202edcba\\u2066x\\u2069" in text  # bidi controls shown, not obeyed
    assert "\u202e" not in html
    # The raw record is embedded as escaped text (never in a <script>), and reads back as the record.
    embedded = re.search(r'<pre id="record-json">(.*?)</pre>', html, re.DOTALL)
    assert embedded is not None
    assert ScanRecord.from_json(unescape(embedded.group(1))) == _very_hostile_record()
    for other in (site / "index.html", site / repo_page_path("mallory/evil-clip")):
        assert SCRIPT not in other.read_text(encoding="utf-8")


@pytest.mark.parametrize("repo_id", [
    IMG_ONERROR, f"acme/{IMG_ONERROR}", "../etc/passwd", "acme/..", "acme/../../x", "/abs/x", "acme/x/y", "acme",
    "acme/", "ac me/x", "acmé/x", "acme/x\x00", ".hidden/x", "acme/x.", "index.html/x", "badges/clean.svg", "",
])
def test_unsafe_repo_ids_are_refused(tmp_path: Path, repo_id: str) -> None:
    out = tmp_path / "site"
    summary = build_site([(repo_id, SHA_A, "2025-01-01T00:00:00Z", make_record(Verdict.BACKDOOR)),
                          ("acme/ok", SHA_A, "2025-01-01T00:00:00Z", make_record(Verdict.CLEAN))], out)
    assert [refused.repo_id for refused in summary.refused] == [repo_id]
    assert summary.repos == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
    assert sorted(p.name for p in out.iterdir()) == ["_static", "acme", "badges", "index.html"]
    assert sorted(p.name for p in (out / "acme").iterdir()) == ["ok"]
    assert (out / "badges" / "clean.svg").read_text(encoding="utf-8") == badge_svg("clean")


@pytest.mark.parametrize("sha", ["main", SHA_A.upper(), SHA_A[:12], "../" + SHA_A[3:], SHA_A + "0"])
def test_bad_shas_are_refused(tmp_path: Path, sha: str) -> None:
    summary = build_site([("acme/x", sha, "2025-01-01T00:00:00Z", make_record(Verdict.CLEAN))], tmp_path)
    assert len(summary.refused) == 1 and summary.repos == 0
    assert not (tmp_path / "acme").exists()


def test_badges_are_valid_svg_with_stable_names(tmp_path: Path) -> None:
    build_site([], tmp_path)
    files = sorted(path.name for path in (tmp_path / "badges").iterdir())
    assert files == sorted(f"{state}.svg" for state in
                           ("backdoor", "natural-only", "clean", "inconclusive", "not-scanned"))
    colors = {}
    for state in BADGE_STATES:
        root = ET.fromstring((tmp_path / "badges" / f"{state}.svg").read_text(encoding="utf-8"))
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert int(root.get("width")) > 60 and root.get("height") == "20"
        texts = [node.text for node in root.iter("{http://www.w3.org/2000/svg}text")]
        assert texts == ["clip-audit", state.replace("-", " ") if state == "not-scanned" else state]
        colors[state] = root.findall(".//{http://www.w3.org/2000/svg}rect")[-1].get("fill")
    assert len(set(colors.values())) == len(BADGE_STATES)
    with pytest.raises(ValueError):
        badge_svg("../evil")


def test_every_inversion_restart_is_shown(site: Path) -> None:
    page = (site / revision_page_path("acme/clip-vit-b", SHA_A)).read_text(encoding="utf-8")
    table = page[page.index('<table class="restarts">'):]
    table = table[:table.index("</table>")]
    rows = table.split("<tr>")[2:]
    assert len(rows) == 2
    assert "0.1" in rows[0] and "clean" in rows[0] and "–" in rows[0]  # no landscape for that restart
    assert 'class="num normal">0.870' in rows[0]  # short of its threshold: marked as normal, not as failed
    assert "backdoor" in rows[1] and 'class="num backdoor-like">0.990' in rows[1]
    assert 'class="num evidence">0.960' in rows[1]  # the landscape decides nothing, so it is never marked
    # a single-restart scan has nothing to compare: no table
    assert "Inversion restarts" not in (site / revision_page_path("acme/clip-vit-b", SHA_B)).read_text()


def _check_rows(page: str) -> list[tuple[str, str]]:
    """(reading class, what it means) of each row of a revision page's checks table."""
    table = page[page.index('<table class="checks'):]
    table = table[:table.index("</table>")]
    return re.findall(r'<tr class="([a-z-]+)" data-check="[a-z_]+">.*?<td class="text result"[^>]*>(.*?)</td>',
                      table, re.DOTALL)


def test_checks_say_what_each_result_means_never_pass_or_fail(site: Path) -> None:
    clean = (site / revision_page_path("acme/clip-vit-b", SHA_B)).read_text(encoding="utf-8")
    rows = _check_rows(clean)
    assert [reading for reading, _ in rows] == ["normal", "normal", "normal"]
    assert all(meaning.startswith("As in ") for _, meaning in rows)
    assert '<p id="trigger-line"><strong>No trigger confirmed</strong>.</p>' in clean
    backdoor = (site / revision_page_path("acme/clip-vit-b", SHA_A)).read_text(encoding="utf-8")
    rows = _check_rows(backdoor)
    assert [reading for reading, _ in rows] == ["backdoor-like", "backdoor-like", "backdoor-like", "evidence"]
    assert "Evidence only; it never changes the verdict" in rows[3][1]
    assert 'Trigger confirmed:</strong> <code class="token">cf&lt;/w&gt;</code>' in backdoor
    for page in (clean, backdoor):
        assert not re.search(r">\s*(passed|failed|pass|fail)\s*<", page)
        assert "0.800" in page[page.index('class="measures"'):]  # the raw score and threshold stay, folded


def test_revision_pages_say_how_the_anchor_was_chosen(site: Path) -> None:
    html = (site / revision_page_path("acme/clip-vit-b", SHA_A)).read_text(encoding="utf-8")
    choice = html[html.index('id="anchor-choice"'):]
    choice = choice[:choice.index("</dd>")]
    assert "by the weights" in choice and "0.018" in choice and "3d74acf9a28c" in choice and "on first use" in choice
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K at 1.387" in choice
    assert 'id="anchor-finding"' not in html  # the card named the chosen base: nothing to report
    hostile = (site / revision_page_path("mallory/evil-clip", SHA_A)).read_text(encoding="utf-8")
    finding = hostile[hostile.index('id="anchor-finding"'):]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in finding[:finding.index("</dd>")]


def test_record_without_landscape_renders_without_that_plot(site: Path) -> None:
    record = make_record(Verdict.CLEAN)
    assert record.landscape is None
    path = site / revision_page_path("acme/clip-vit-b", SHA_B)
    page = _parse(path)
    sources = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert sources == ["../../badges/clean.svg", f"{SHA_B}/assimilation.png", f"{SHA_B}/attention.png"]
    assert "Not available: no loss landscape was computed for this scan." in "".join(page.text)
    assert not (site / "acme/clip-vit-b" / SHA_B / "landscape.png").exists()


def test_plots_skip_absent_or_unusable_data(tmp_path: Path) -> None:
    empty = replace(make_record(Verdict.INCONCLUSIVE), assimilation_with_trigger=[], assimilation_without_trigger=[],
                    attention_share_per_layer=[])
    plots = write_plots(empty, tmp_path / "empty")
    assert [plot.file for plot in plots.all()] == [None, None, None]
    assert all(plot.skipped_reason for plot in plots.all())

    nan = float("nan")
    odd = replace(make_record(Verdict.BACKDOOR), assimilation_with_trigger=[nan, 0.9, float("inf")],
                  attention_share_per_layer=[0.1, nan],
                  landscape=Landscape([-1.0, 1.0], [-1.0, 1.0], [[nan, 1.0], [0.5, 2.0]], [nan, 1.0, -2.0], nan))
    plots = write_plots(odd, tmp_path / "odd")
    assert [plot.file for plot in plots.all()] == ["landscape.png", "assimilation.png", "attention.png"]
    assert plots.landscape.width > 0 and plots.landscape.height > 0

    ragged = replace(odd, landscape=Landscape([-1.0, 0.0, 1.0], [-1.0, 1.0], [[1.0, 2.0]], [1.0], 1.0))
    assert "does not match" in write_plots(ragged, tmp_path / "ragged").landscape.skipped_reason
    tiny = replace(odd, landscape=Landscape([0.0], [0.0], [[1.0]], [1.0], 1.0))
    assert write_plots(tiny, tmp_path / "tiny").landscape.file is None


def test_build_is_deterministic_and_rewrites_nothing_unchanged(tmp_path: Path) -> None:
    records = _records()[:3]
    first, second = tmp_path / "one", tmp_path / "two"
    build_site(records, first)
    build_site(list(reversed(records)), second, reuse_plots=False)

    def contents(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert contents(first) == contents(second)
    mtimes = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}
    build_site(records, first)
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == mtimes


def test_duplicate_revision_keeps_the_newest_audit(tmp_path: Path) -> None:
    summary = build_site([
        ("acme/x", SHA_A, "2025-01-02T00:00:00Z", make_record(Verdict.BACKDOOR)),
        ("acme/x", SHA_A, "2025-01-01T00:00:00Z", make_record(Verdict.CLEAN)),
    ], tmp_path)
    assert summary.revisions == 1 and summary.latest_verdicts["backdoor"] == 1 and len(summary.refused) == 1


def test_build_from_store_converts_times_and_refuses_unreadable_records(tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as store:
        for repo_id, sha, _, record in _records()[:3]:
            store.record_scan(repo_id=repo_id, sha=sha, record_json=record.to_json(), verdict=record.verdict.value)
        future = json.loads(make_record(Verdict.CLEAN).to_json()) | {"record_version": 99}
        store.record_scan(repo_id="acme/future", sha=SHA_C, record_json=json.dumps(future), verdict="clean")
        summary = build_from_store(store, tmp_path / "site")
    assert summary.repos == 2 and summary.revisions == 3
    assert [(r.repo_id, r.sha) for r in summary.refused] == [("acme/future", SHA_C)]
    assert "unsupported record_version" in summary.refused[0].reason
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", (tmp_path / "site" / "index.html").read_text(encoding="utf-8"))


def _index_rows(site: Path) -> dict[str, str]:
    """repo id -> the HTML of its row in the index."""
    html = (site / "index.html").read_text(encoding="utf-8")
    rows = re.findall(r'<tr data-verdict="[^"]+">.*?</tr>', html, re.DOTALL)
    return {unescape(re.search(r'data-value="([^"]+)"', row).group(1)): row for row in rows}


def test_skipped_repos_are_listed_as_not_scanned_with_the_reason(tmp_path: Path) -> None:
    skipped = [
        SkippedRevision("bob/legacy-clip-bin", SHA_A, "2025-03-05T00:00:00Z",
                        "pickle-only: only pickle weights (pytorch_model.bin); the bot never unpickles"),
        SkippedRevision("bob/legacy-clip-bin", SHA_B, "2025-03-01T00:00:00Z", "pickle-only: older"),
        SkippedRevision("acme/clip-vit-b", SHA_C, "2025-03-09T00:00:00Z", "oversized: the files total 9 GiB"),
        SkippedRevision("beta-lab/longclip-ft", SHA_C, "2025-01-01T00:00:00Z", "gated: before the audit"),
        SkippedRevision("mallory/sneaky", SHA_A, "2025-03-06T00:00:00Z", f"pickle-only: {IMG_ONERROR}{SCRIPT}"),
        SkippedRevision("../etc/passwd", SHA_A, "2025-03-06T00:00:00Z", "no-weights: x"),
    ]
    summary = build_site(_records()[:3], tmp_path, skipped=skipped)
    assert summary.not_scanned == 2 and summary.repos == 2
    assert [refused.repo_id for refused in summary.refused] == ["../etc/passwd"]
    rows = _index_rows(tmp_path)
    legacy = rows["bob/legacy-clip-bin"]
    assert 'data-verdict="not-scanned"' in legacy and 'src="badges/not-scanned.svg"' in legacy
    assert "only pickle weights (pytorch_model.bin); the bot never unpickles" in legacy  # the newest skip, whole
    assert "<a " not in legacy  # nothing to link to: the bot has no report on it
    # A repo audited before keeps its verdict; a newer commit it could not scan is noted under it.
    assert 'data-verdict="backdoor"' in rows["acme/clip-vit-b"]
    assert "not scanned: oversized: the files total 9 GiB" in rows["acme/clip-vit-b"]
    assert "not scanned" not in rows["beta-lab/longclip-ft"]  # a skip older than its audit says nothing new
    assert SCRIPT not in rows["mallory/sneaky"] and "&lt;script&gt;" in rows["mallory/sneaky"]
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'data-verdict-count="not-scanned">2<' in html and '<option value="not-scanned">' in html


def test_build_from_store_lists_the_stores_skips(tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as store:
        store.record_skip(repo_id="bob/legacy-clip-bin", sha=SHA_A,
                          skip=SkipRepo(SkipReason.PICKLE_ONLY, "only pickle weights (pytorch_model.bin)"))
        summary = build_from_store(store, tmp_path / "site")
    assert summary.not_scanned == 1 and summary.repos == 0
    row = _index_rows(tmp_path / "site")["bob/legacy-clip-bin"]
    assert "pickle-only: only pickle weights (pytorch_model.bin)" in row and SHA_A[:12] in row


def test_templates_escape_everything(tmp_path: Path) -> None:
    env = build_environment()
    assert env.autoescape is True
    for template in TEMPLATES_DIR.glob("*.j2"):
        source = template.read_text(encoding="utf-8")
        assert "|safe" not in source.replace(" ", "") and "Markup" not in source, template
        assert "autoescape false" not in source, template
    with pytest.raises(Exception, match="None"):
        env.from_string("{{ value }}").render(value=None)


def test_server_serves_the_site_and_nothing_else(site: Path) -> None:
    with SiteServer(site) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url + "index.html", timeout=10) as response:
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        with urllib.request.urlopen(server.url + revision_json_path("acme/clip-vit-b", SHA_A), timeout=10) as response:
            assert response.headers["Content-Type"] == "application/json"
            assert json.loads(response.read())["verdict"] == "backdoor"
        with urllib.request.urlopen(server.url + "badges/clean.svg", timeout=10) as response:
            assert response.headers["Content-Type"] == "image/svg+xml"
        for path in ("acme/", "../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd"):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(server.url + path, timeout=10)
            assert error.value.code == 404


def _site_parser():
    from bot.cli import build_parser

    return build_parser()


def test_site_build_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLIP_AUDIT_CONFIG", raising=False)
    monkeypatch.setenv("CLIP_AUDIT_REPORT_BASE_URL", BASE_URL)
    with Store(tmp_path / "state.db") as store:
        for repo_id, sha, _, record in _records()[:2]:
            store.record_scan(repo_id=repo_id, sha=sha, record_json=record.to_json(), verdict=record.verdict.value)
    args = _site_parser().parse_args(["site", "build", "--db", str(tmp_path / "state.db"), "--out", "public"])
    assert args.func(args) == 0
    assert "1 repos, 2 revisions" in capsys.readouterr().out
    page = (tmp_path / "public" / revision_page_path("acme/clip-vit-b", SHA_A)).read_text(encoding="utf-8")
    assert f"{BASE_URL}/acme/clip-vit-b/{SHA_A}.html" in page

    args = _site_parser().parse_args(["site", "build", "--db", str(tmp_path / "missing.db")])
    with pytest.raises(UsageError, match="no state database"):
        args.func(args)
    args = _site_parser().parse_args(["site", "serve", "--dir", str(tmp_path / "nothing")])
    with pytest.raises(UsageError, match="site build"):
        args.func(args)
    with pytest.raises(SystemExit) as exit_info:
        _site_parser().parse_args(["site"])
    assert exit_info.value.code == 4
