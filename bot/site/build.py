"""Building the static report site from scan records: an index, one page per repo, one per audited revision.

Layout under the output directory (every link between pages is relative, so the site works from file://):

    index.html                       every audited repo, its latest verdict; sortable and filterable
    badges/{state}.svg               verdict badges (bot/site/badges.py)
    _static/site.css, site.js        no repo part can start with "_", so no repo can shadow these
    {owner}/{name}/index.html        the repo's audited revisions
    {owner}/{name}/{sha}.html        one revision's report: the page Hub posts link to (render.report_page_url)
    {owner}/{name}/{sha}.json        the record it was rendered from
    {owner}/{name}/{sha}/*.png       its plots (bot/site/plots.py)

The site is a function of the records alone (no clock, no environment), and files whose bytes did not change
are not rewritten. Records are written before any page is rendered: persist first, render second.
Repo ids and shas become paths, so anything but a valid `owner/name` and a full commit sha is refused.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from bot.fileio import atomic_write_bytes
from bot.hub.ids import is_commit_sha, is_safe_repo_id
from bot.publish.explain import explain_checks
from bot.publish.render import badge_markdown, badge_svg_url, report_page_url
from bot.scan_record import ScanRecord, Verdict
from bot.site.badges import BADGE_STATES, NOT_SCANNED, badge_files, badge_path
from bot.site.plots import RevisionPlots, write_plots
from bot.template_files import TEMPLATES_DIR as TEMPLATE_ROOT

log = logging.getLogger(__name__)

TEMPLATES_DIR = TEMPLATE_ROOT / "site"
STATIC_DIR = "_static"
STATIC_FILES = ("site.css", "site.js")

VERDICT_ORDER: tuple[str, ...] = tuple(verdict.value for verdict in Verdict)  # most severe first
INDEX_STATES: tuple[str, ...] = (*VERDICT_ORDER, NOT_SCANNED)  # the index also lists repos the bot skipped
VERDICT_MEANING = {
    Verdict.BACKDOOR.value: "An injected textual backdoor was found: an inverted pseudo-token pulls unrelated "
    "prompts onto one shared target, and the clean anchor model, given the same pseudo-token, does not follow.",
    Verdict.NATURAL_ONLY.value: "A trigger-like direction exists, but an earlier version of the bot judged it, by "
    "the loss landscape's mixed curvature, a natural shortcut that clean models share, not an injected backdoor.",
    Verdict.CLEAN.value: "No inverted pseudo-token behaved like a trigger: no textual backdoor was found.",
    Verdict.INCONCLUSIVE.value: "The detector could not reach a verdict; the notes below say why.",
}
_PLOT_TEXT = {
    "landscape": ("Loss landscape and Hessian eigenvalues",
                  "Loss around the inverted pseudo-token (left) and its Hessian eigenvalues (right)."),
    "assimilation": ("Assimilation with and without the trigger",
                     "Per held-out prompt: how alike the token features become with the inverted trigger inserted, "
                     "against the same prompts without it."),
    "attention": ("Attention share per layer",
                  "The share of attention the inserted token receives in each layer."),
}
# Top-level files the site writes itself; no repo's directory may take one of these names.
_RESERVED_PATHS = frozenset({"index.html", *(badge_path(state) for state in BADGE_STATES)})


@dataclass(frozen=True)
class RefusedRecord:
    repo_id: str      # as given (shown with repr() in logs, never used as a path)
    sha: str
    reason: str


@dataclass(frozen=True)
class SkippedRevision:
    """A revision the bot did not scan, and why (the store's skips): the index lists it as not scanned."""

    repo_id: str
    sha: str
    created_at: str   # ISO-8601 UTC
    reason: str       # code and detail, as shown to people; may quote the repo's file names


@dataclass(frozen=True)
class SiteSummary:
    out_dir: Path
    repos: int
    revisions: int
    latest_verdicts: dict[str, int]      # verdict -> repos whose latest audited revision has it
    refused: tuple[RefusedRecord, ...] = ()
    pages: tuple[str, ...] = ()          # every HTML page, relative to out_dir
    not_scanned: int = 0                 # repos the index lists as not scanned (their newest revision was skipped)


@dataclass(frozen=True)
class _Revision:
    repo_id: str
    sha: str
    created_at: str
    record: ScanRecord
    plots: RevisionPlots | None = field(default=None, compare=False)


# -- paths ------------------------------------------------------------------------------------------------


def path_problem(repo_id: object, sha: object) -> str | None:
    """Why (repo_id, sha) cannot become site paths, or None when it can."""
    if not isinstance(repo_id, str) or not repo_id.isascii() or not is_safe_repo_id(repo_id):
        return "not a valid owner/name repo id"
    if not isinstance(sha, str) or not is_commit_sha(sha):
        return "not a full 40-hex commit sha"
    owner = repo_id.split("/")[0]
    if owner in _RESERVED_PATHS or repo_id in _RESERVED_PATHS:
        return "its path would collide with a file of the site itself"
    return None


def repo_page_path(repo_id: str) -> str:
    return f"{quote(repo_id, safe='/')}/index.html"


def revision_page_path(repo_id: str, sha: str) -> str:
    """Mirrors render.report_page_url: {report_base_url}/{repo_id}/{sha}.html."""
    return f"{quote(repo_id, safe='/')}/{sha}.html"


def revision_json_path(repo_id: str, sha: str) -> str:
    return f"{quote(repo_id, safe='/')}/{sha}.json"


def _plot_dir(out_dir: Path, revision: _Revision) -> Path:
    return out_dir / revision.repo_id / revision.sha


# -- templates ---------------------------------------------------------------------------------------------

_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


def _shown_char(char: str) -> str:
    if char in "\n\t" or unicodedata.category(char) not in _HIDDEN_CATEGORIES:
        return char
    return f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}"


def visible_text(text: str) -> str:
    """Bidi controls and zero-width characters shown as \\uXXXX: an audit must not hide or reorder text."""
    return "".join(_shown_char(char) for char in text)


def _finalize(value: Any) -> Any:
    if isinstance(value, Markup):
        return value
    if value is None:
        raise ValueError("a site template printed None: handle the missing value in the template")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return visible_text(value)
    return value


def _number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def _seconds(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


_ISO_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})")


def _when(created_at: str) -> str:
    match = _ISO_TIME.match(created_at)
    return f"{match.group(1)} {match.group(2)}" if match else created_at


@lru_cache(maxsize=2)
def build_environment(templates_dir: Path = TEMPLATES_DIR) -> jinja2.Environment:
    """HTML templates: autoescape on, StrictUndefined, and printing None is an error."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(number=_number, seconds=_seconds, short_sha=lambda sha: sha[:12], when=_when)
    return env


def _render(name: str, context: dict[str, Any]) -> str:
    return build_environment().get_template(name).render(context)


# -- contexts ----------------------------------------------------------------------------------------------


def _verdict_rank(verdict: str) -> int:
    return INDEX_STATES.index(verdict)


def _index_context(repos: dict[str, list[_Revision]], skipped: dict[str, SkippedRevision]) -> dict[str, Any]:
    """One row per repo: its latest audited verdict, with a skip of a newer commit noted under it; a repo
    the bot skipped every time gets a not-scanned row with the reason."""
    rows = []
    for repo_id, revisions in repos.items():
        latest = revisions[-1]
        verdict = latest.record.verdict.value
        newer = skipped.get(repo_id)
        rows.append({
            "repo_id": repo_id, "family": latest.record.family, "verdict": verdict,
            "verdict_rank": _verdict_rank(verdict), "badge_src": badge_path(verdict), "sha": latest.sha,
            "created_at": latest.created_at, "revisions": len(revisions), "reason": None,
            "newer_skip": newer if newer is not None and newer.created_at > latest.created_at else None,
            "repo_href": repo_page_path(repo_id), "revision_href": revision_page_path(repo_id, latest.sha),
        })
    for repo_id, skip in skipped.items():
        if repo_id in repos:
            continue
        rows.append({
            "repo_id": repo_id, "family": "", "verdict": NOT_SCANNED, "verdict_rank": _verdict_rank(NOT_SCANNED),
            "badge_src": badge_path(NOT_SCANNED), "sha": skip.sha, "created_at": skip.created_at, "revisions": 0,
            "reason": skip.reason, "newer_skip": None, "repo_href": None, "revision_href": None,
        })
    rows.sort(key=lambda row: row["repo_id"])
    rows.sort(key=lambda row: row["created_at"], reverse=True)
    counts = dict.fromkeys(INDEX_STATES, 0)
    for row in rows:
        counts[row["verdict"]] += 1
    return {
        "root": "", "canonical_url": None, "rows": rows, "verdicts": INDEX_STATES,
        "counts": [{"verdict": v, "count": counts[v], "badge_src": badge_path(v)} for v in INDEX_STATES],
        "revision_total": sum(len(revisions) for revisions in repos.values()),
    }


def _latest_counts(repos: dict[str, list[_Revision]]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICT_ORDER, 0)
    for revisions in repos.values():
        counts[revisions[-1].record.verdict.value] += 1
    return counts


def _repo_context(repo_id: str, revisions: list[_Revision]) -> dict[str, Any]:
    rows = []
    for revision in reversed(revisions):
        record, verdict = revision.record, revision.record.verdict.value
        rows.append({
            "sha": revision.sha, "created_at": revision.created_at, "verdict": verdict,
            "verdict_rank": _verdict_rank(verdict), "badge_src": "../../" + badge_path(verdict),
            "href": f"{revision.sha}.html", "json_href": f"{revision.sha}.json",
            "confirmed": sum(1 for trigger in record.triggers if trigger.confirmed),
            "target": record.target_captions[0].caption if record.target_captions else "",
        })
    return {"root": "../../", "canonical_url": None, "repo_id": repo_id, "family": revisions[-1].record.family,
            "rows": rows}


def _plot_context(revision: _Revision) -> list[dict[str, Any]]:
    assert revision.plots is not None
    items = []
    for plot in revision.plots.all():
        title, caption = _PLOT_TEXT[plot.name]
        items.append({
            "name": plot.name, "title": title, "caption": caption, "reason": plot.skipped_reason or "",
            "src": f"{revision.sha}/{plot.file}" if plot.file else None,
            "width": plot.width, "height": plot.height,
        })
    return items


_RESTART_COLUMNS = ("assimilation", "same_target", "different_target", "landscape")


def _revision_context(revision: _Revision, *, base_url: str | None) -> dict[str, Any]:
    record, verdict = revision.record, revision.record.verdict
    timings = sorted(record.timings.items(), key=lambda item: item[0] == "total")  # stable: phases keep their order
    return {
        "root": "../../", "repo_id": revision.repo_id, "sha": revision.sha, "created_at": revision.created_at,
        "record": record, "verdict": verdict.value, "verdict_meaning": VERDICT_MEANING[verdict.value],
        "badge_src": "../../" + badge_path(verdict.value), "plots": _plot_context(revision),
        "timings": timings, "versions": sorted(record.versions.items()),
        "json_href": f"{revision.sha}.json", "record_json": record.to_json(),
        "confirmed": [trigger for trigger in record.triggers if trigger.confirmed],
        "checks": list(zip(record.checks, explain_checks(record))),
        "restart_columns": _RESTART_COLUMNS,
        "restarts": [{"gamma": c.gamma, "steps": c.steps, "verdict": c.verdict.value,
                      "checks": {check.name: check for check in c.checks}} for c in record.candidates],
        "canonical_url": report_page_url(base_url, repo_id=revision.repo_id, sha=revision.sha) if base_url else None,
        "badge_markdown": badge_markdown(report_base_url=base_url, repo_id=revision.repo_id, sha=revision.sha,
                                         verdict=verdict) if base_url else None,
    }


# -- writing -----------------------------------------------------------------------------------------------


def _write_if_changed(path: Path, data: str | bytes) -> bool:
    content = data.encode("utf-8") if isinstance(data, str) else data
    try:
        if path.read_bytes() == content:
            return False
    except OSError:
        pass
    # Replace, never truncate in place: a server publishing out_dir meanwhile sees the old file or the new one.
    atomic_write_bytes(path, content)
    return True


def _accept(
    records: Iterable[tuple[str, str, str, ScanRecord]], refused: list[RefusedRecord]
) -> dict[str, list[_Revision]]:
    by_key: dict[tuple[str, str], _Revision] = {}
    for repo_id, sha, created_at, record in records:
        problem = path_problem(repo_id, sha)
        if problem is None and not isinstance(created_at, str):
            problem = "created_at is not a string"
        if problem is None and not isinstance(record, ScanRecord):
            problem = "not a ScanRecord"
        if problem is None and (repo_id, sha) in by_key:
            # Keep the newest audit of a revision; the other one is reported as refused.
            kept = max(by_key[(repo_id, sha)], _Revision(repo_id, sha, created_at, record),
                       key=lambda revision: revision.created_at)
            by_key[(repo_id, sha)] = kept
            refused.append(RefusedRecord(repo_id, sha, f"duplicate: the audit at {kept.created_at} is shown"))
            continue
        if problem is not None:
            log.warning("site: refusing the record of %r @ %r: %s", repo_id, sha, problem)
            refused.append(RefusedRecord(str(repo_id), str(sha), problem))
            continue
        by_key[(repo_id, sha)] = _Revision(repo_id, sha, created_at, record)
    repos: dict[str, list[_Revision]] = {}
    for revision in sorted(by_key.values(), key=lambda r: (r.repo_id, r.created_at, r.sha)):
        repos.setdefault(revision.repo_id, []).append(revision)
    return repos


def _accept_skips(skipped: Iterable[SkippedRevision], refused: list[RefusedRecord]) -> dict[str, SkippedRevision]:
    """The newest skip of each repo whose id and sha are sound (the same rule as for records)."""
    newest: dict[str, SkippedRevision] = {}
    for skip in skipped:
        problem = path_problem(skip.repo_id, skip.sha)
        if problem is None and not (isinstance(skip.created_at, str) and isinstance(skip.reason, str)):
            problem = "created_at or reason is not a string"
        if problem is not None:
            log.warning("site: refusing the skip of %r @ %r: %s", skip.repo_id, skip.sha, problem)
            refused.append(RefusedRecord(str(skip.repo_id), str(skip.sha), problem))
            continue
        kept = newest.get(skip.repo_id)
        if kept is None or skip.created_at > kept.created_at:
            newest[skip.repo_id] = skip
    return newest


def _copy_static(out_dir: Path, templates_dir: Path) -> None:
    for name in STATIC_FILES:
        _write_if_changed(out_dir / STATIC_DIR / name, (templates_dir / "static" / name).read_bytes())


def _build(
    records: Iterable[tuple[str, str, str, ScanRecord]], out_dir: Path, *, base_url: str | None, reuse_plots: bool,
    refused: list[RefusedRecord], skipped: Iterable[SkippedRevision] = (),
) -> SiteSummary:
    if base_url is not None:
        badge_svg_url(base_url, Verdict.CLEAN)  # refuses anything but a plain http(s) URL, as posts do
    repos = _accept(records, refused)
    skips = _accept_skips(skipped, refused)
    out_dir.mkdir(parents=True, exist_ok=True)
    for revisions in repos.values():  # persist first
        for revision in revisions:
            _write_if_changed(out_dir / revision_json_path(revision.repo_id, revision.sha), revision.record.to_json())
    for relative, svg in badge_files().items():
        _write_if_changed(out_dir / relative, svg)
    _copy_static(out_dir, TEMPLATES_DIR)
    pages = ["index.html"]
    for repo_id, revisions in repos.items():  # render second
        for index, revision in enumerate(revisions):
            plots = write_plots(revision.record, _plot_dir(out_dir, revision), reuse=reuse_plots)
            revisions[index] = revision = _Revision(revision.repo_id, revision.sha, revision.created_at,
                                                    revision.record, plots)
            page = revision_page_path(repo_id, revision.sha)
            html = _render("revision.html.j2", _revision_context(revision, base_url=base_url))
            _write_if_changed(out_dir / page, html)
            pages.append(page)
        _write_if_changed(out_dir / repo_page_path(repo_id), _render("repo.html.j2", _repo_context(repo_id, revisions)))
        pages.append(repo_page_path(repo_id))
    _write_if_changed(out_dir / "index.html", _render("index.html.j2", _index_context(repos, skips)))
    return SiteSummary(
        out_dir=out_dir, repos=len(repos), revisions=sum(len(revisions) for revisions in repos.values()),
        latest_verdicts=_latest_counts(repos), refused=tuple(refused), pages=tuple(pages),
        not_scanned=sum(1 for repo_id in skips if repo_id not in repos),
    )


def build_site(
    records: Iterable[tuple[str, str, str, ScanRecord]], out_dir: Path, *, base_url: str | None = None,
    reuse_plots: bool = True, skipped: Iterable[SkippedRevision] = (),
) -> SiteSummary:
    """Builds the site for `records`: (repo_id, sha, created_at as ISO-8601 UTC, record) tuples.

    Records whose repo id or sha cannot be a safe path are left out and listed in `SiteSummary.refused`.
    `base_url` (the operator's report_base_url) adds canonical links and README badge snippets to revision
    pages. `reuse_plots` keeps plots already drawn from an identical record. `skipped` revisions (the bot's
    skips) put repos it never scanned into the index as not scanned, with the reason.
    Files already in out_dir that no record produces are left alone.
    """
    return _build(records, Path(out_dir), base_url=base_url, reuse_plots=reuse_plots, refused=[], skipped=skipped)


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_from_store(store, out_dir: Path, *, base_url: str | None = None, reuse_plots: bool = True) -> SiteSummary:
    """Builds the site from every scan in a bot.state.store.Store; unreadable records are refused, not fatal."""
    refused: list[RefusedRecord] = []
    records = []
    for row in store.all_scans():
        try:
            records.append((row.repo_id, row.sha, iso_utc(row.created_at), row.record()))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("site: unreadable record of %r @ %r: %s", row.repo_id, row.sha, exc)
            refused.append(RefusedRecord(row.repo_id, row.sha, f"unreadable record: {exc}"))
    skipped = [SkippedRevision(skip.repo_id, skip.sha, iso_utc(skip.created_at), skip.reason)
               for skip in store.skips()]
    return _build(records, Path(out_dir), base_url=base_url, reuse_plots=reuse_plots, refused=refused,
                  skipped=skipped)

