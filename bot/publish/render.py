"""Rendering Hub posts (reports, revision comments, acknowledgements, help, badge PRs) from scan records.

Templates live in templates/ at the repository root (bot/templates when installed: bot/template_files.py).
The jinja2 environment escapes by default: every value printed with {{ }} goes through escape_markdown unless it
is a `Markdown` instance (template literals, numbers formatted by the filters below, links built here from
validated parts). A repo owner's text therefore cannot inject Markdown even when a template forgets the `md`
filter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import quote

import jinja2

from bot.errors import TemplateValueError
from bot.hub.ids import is_commit_sha, is_safe_repo_id
from bot.publish.explain import confirmed_triggers, explain_checks
from bot.publish.markdown_escape import Markdown, escape_markdown
from bot.scan_record import ScanRecord, Verdict
from bot.template_files import TEMPLATES_DIR

AckKind = Literal[
    "scan-queued",         # a scan job was enqueued; the result will follow in this thread
    "scan-in-progress",    # a job for this commit already exists
    "scan-not-possible",   # the commit was skipped (reason given) or its scan failed for good
    "already-reported",    # this commit's result was already posted in this thread
    "revision-not-found",  # the requested branch or sha does not exist
    "opted-out",           # the owner opted out of unprompted posts
    "opted-in",            # the owner opted back in
    "not-owner",           # opt-out/opt-in asked by someone who is not the repo's namespace
    "badge-offered",       # a badge PR was opened
    "badge-already-offered",
    "badge-needs-scan",    # no scan of the current head yet
    "badge-unavailable",   # no report site configured, or PRs are disabled
]
ACK_KINDS: tuple[str, ...] = get_args(AckKind)


def _finalize(value: Any) -> Any:
    if isinstance(value, Markdown):
        return value
    if value is None:
        raise TemplateValueError("a template printed None")
    if isinstance(value, bool):
        return Markdown("yes" if value else "no")
    if isinstance(value, int):
        return Markdown(str(value))
    if isinstance(value, float):
        return _score(value)
    return escape_markdown(value)


def _score(value: float) -> Markdown:
    return Markdown(f"{value:.3f}") if math.isfinite(value) else Markdown("n/a")


def _seconds(value: float) -> Markdown:
    if not math.isfinite(value):
        return Markdown("n/a")
    return Markdown(f"{value:.1f} s") if value < 120 else Markdown(f"{value / 60:.1f} min")


def _short_sha(sha: str) -> Markdown:
    _require_sha(sha)
    return Markdown(sha[:12])


def _md(value: Any, max_length: int | None = 300) -> Markdown:
    return escape_markdown(value, max_length=max_length)


@lru_cache(maxsize=4)
def build_environment(templates_dir: Path = TEMPLATES_DIR) -> jinja2.Environment:
    """The shared environment: StrictUndefined, escape-by-default finalize, and the md/score/seconds filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Markdown, not HTML: escaping is done by _finalize and the md filter
        finalize=_finalize,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(md=_md, score=_score, seconds=_seconds, short_sha=_short_sha)
    return env


# -- links built from validated parts --------------------------------------------------------------------------


def _require_sha(sha: str) -> None:
    if not is_commit_sha(sha):
        raise ValueError(f"expected a full 40-hex commit sha, got {sha!r}")


_OPERATOR_URL = re.compile(r"^https?://[^\s()<>\[\]`'\"|\\]+$")


def _require_url(url: str) -> str:
    """Operator-configured links go into posts unescaped, so they must be plain http(s) URLs."""
    if not _OPERATOR_URL.match(url):
        raise ValueError(f"not a plain http(s) URL: {url!r}")
    return url


def _require_repo_id(repo_id: str) -> None:
    if not is_safe_repo_id(repo_id):
        raise ValueError(f"not a valid Hub repo id: {repo_id!r}")


def report_page_url(report_base_url: str, *, repo_id: str, sha: str) -> str:
    """The report page pinned to one commit: {report_base_url}/{repo_id}/{sha}.html."""
    _require_repo_id(repo_id)
    _require_sha(sha)
    base = _require_url(report_base_url).rstrip("/")
    return f"{base}/{quote(repo_id, safe='/')}/{sha}.html"


def badge_svg_url(report_base_url: str, verdict: Verdict) -> str:
    return f"{_require_url(report_base_url).rstrip('/')}/badges/{verdict.value}.svg"


def badge_markdown(*, report_base_url: str, repo_id: str, sha: str, verdict: Verdict) -> str:
    """One line of Markdown: the verdict's SVG badge, linking to the report page of the scanned commit."""
    image = badge_svg_url(report_base_url, verdict)
    page = report_page_url(report_base_url, repo_id=repo_id, sha=sha)
    return f"[![clip-audit: {verdict.value}]({image})]({page})"


_HUB_OBJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def reply_marker(comment_id: str) -> str:
    """The invisible last line (an HTML comment) of every reply to a mention: finding it in a thread means that
    comment was answered, so a retry after a crash between posting and recording never answers twice. Empty
    for an id that is not a plain Hub object id (it could end the HTML comment)."""
    return f"<!-- clip-audit reply to {comment_id} -->" if _HUB_OBJECT_ID.match(comment_id) else ""


def scanned_commit_marker(sha: str) -> str:
    """A line every result post carries; finding it in a thread means this commit was already reported there."""
    _require_sha(sha)
    return f"**Scanned commit:** `{sha}`"


# -- context and entry points ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostLinks:
    """Operator settings every template may show."""

    bot_name: str
    report_base_url: str | None
    problems_url: str | None = None


def _common(links: PostLinks, repo_id: str) -> dict[str, Any]:
    _require_repo_id(repo_id)
    return {
        "bot": escape_markdown(links.bot_name),
        "repo_id": escape_markdown(repo_id),
        "problems_url": Markdown(_require_url(links.problems_url)) if links.problems_url else None,
        "has_problems_url": links.problems_url is not None,
    }


def _record_context(record: ScanRecord, *, links: PostLinks, repo_id: str, sha: str) -> dict[str, Any]:
    page = (
        Markdown(report_page_url(links.report_base_url, repo_id=repo_id, sha=sha))
        if links.report_base_url
        else None
    )
    total = record.timings.get("total")
    return {
        **_common(links, repo_id),
        "record": record,
        "verdict": Markdown(record.verdict.value),
        "sha": Markdown(sha),
        "scanned_commit": Markdown(scanned_commit_marker(sha)),
        "report_url": page,
        "has_report_url": page is not None,
        "checks": explain_checks(record),
        "confirmed": confirmed_triggers(record),
        "duration": Markdown(f" in {_seconds(total)}") if total is not None else Markdown(""),
        "versions": Markdown(", ".join(f"{escape_markdown(name)} {escape_markdown(version)}" for name, version in
                                       sorted(record.versions.items()))),  # fmt: skip
    }


_BLANK_LINES = re.compile(r"\n{3,}")


def _render(name: str, context: dict[str, Any]) -> str:
    text = build_environment().get_template(name).render(context)
    # A section that has nothing to say for this record (next steps of a clean scan) leaves its blank lines.
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"


def render_report(
    record: ScanRecord, *, repo_id: str, sha: str, bot_name: str, report_base_url: str | None,
    problems_url: str | None = None,
) -> str:
    """The full report: the opening post of the bot's thread, or a reply to a scan request elsewhere."""
    links = PostLinks(bot_name, report_base_url, problems_url)
    return _render("report.md.j2", _record_context(record, links=links, repo_id=repo_id, sha=sha))


def render_revision_comment(
    record: ScanRecord, *, repo_id: str, sha: str, bot_name: str, report_base_url: str | None,
    problems_url: str | None = None,
) -> str:
    """A later revision's result, posted as a comment in the bot's existing thread."""
    links = PostLinks(bot_name, report_base_url, problems_url)
    return _render("comment_revision.md.j2", _record_context(record, links=links, repo_id=repo_id, sha=sha))


def render_badge_pr(
    record: ScanRecord, *, repo_id: str, sha: str, bot_name: str, report_base_url: str,
    problems_url: str | None = None,
) -> str:
    """The description of the badge pull request."""
    links = PostLinks(bot_name, report_base_url, problems_url)
    context = _record_context(record, links=links, repo_id=repo_id, sha=sha)
    context["badge_line"] = Markdown(
        badge_markdown(report_base_url=report_base_url, repo_id=repo_id, sha=sha, verdict=record.verdict)
    )
    return _render("badge_pr.md.j2", context)


def render_help(*, repo_id: str, bot_name: str, requester: str, problems_url: str | None = None) -> str:
    """The list of commands, as a reply to `requester` (shown without an @)."""
    context = _common(PostLinks(bot_name, None, problems_url), repo_id)
    context["requester"] = escape_markdown(requester, max_length=100)
    return _render("help.md.j2", context)


def render_ack(
    kind: AckKind, *, repo_id: str, bot_name: str, requester: str, revision: str | None = None,
    sha: str | None = None, pr_num: int | None = None, existing_num: int | None = None,
    reason: str | None = None, problems_url: str | None = None,
) -> str:
    """A short reply to a command: what the bot did (or why it did nothing).

    Args:
        kind: which situation; see AckKind.
        requester: Hub user name of the person who asked (shown without an @, so nobody is pinged).
        revision: the revision as asked for (a branch or a sha), when there was one.
        sha: the commit the revision resolved to.
        pr_num: the badge pull request's number (badge-offered, badge-already-offered).
        existing_num: the discussion where the result was already posted (already-reported).
        reason: why the commit cannot be scanned (scan-not-possible).
    """
    if kind not in ACK_KINDS:
        raise ValueError(f"unknown acknowledgement kind {kind!r}")
    if sha is not None:
        _require_sha(sha)
    context = {
        **_common(PostLinks(bot_name, None, problems_url), repo_id),
        "kind": Markdown(kind),
        "requester": escape_markdown(requester, max_length=100),
        "revision": escape_markdown(revision, max_length=120) if revision is not None else None,
        "has_revision": revision is not None,
        "sha": Markdown(sha) if sha is not None else None,
        "has_sha": sha is not None,
        "pr_num": pr_num,
        "existing_num": existing_num,
        "reason": escape_markdown(reason, max_length=200) if reason is not None else None,
        "has_reason": reason is not None,
    }
    return _render("ack.md.j2", context)
