"""Posting scan results on the Hub: one thread per repo, later commits as comments, each commit reported once.

Etiquette (see docs and the Hub brief): the bot keeps a single thread per repo with a stable title, never
reopens a thread someone closed, posts unprompted only on findings (unless configured otherwise), answers
requests where they were made, leaves opted-out repos alone, and offers a README badge at most once per repo.
Duplicates are ruled out twice: by the store, and by looking for the scanned-commit line in the target thread
right before posting (the store may be fresh while the Hub already has the post).
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from bot.errors import DiscussionsDisabledError
from bot.hub.client import HubClient, HubThread
from bot.hub.ids import is_commit_sha, is_safe_repo_id
from bot.publish.badge import add_badge_line
from bot.publish.render import (
    badge_markdown,
    badge_svg_url,
    render_badge_pr,
    render_report,
    render_revision_comment,
    scanned_commit_marker,
)
from bot.scan_record import ScanRecord, Verdict
from bot.state.schema import ThreadStatus
from bot.state.store import Store

logger = logging.getLogger(__name__)

THREAD_TITLE = "clip-audit: backdoor scan report"
BADGE_PR_TITLE = "Add clip-audit scan badge to the README"
REPORT_KIND = "report"
FINDINGS = frozenset({Verdict.BACKDOOR, Verdict.NATURAL_ONLY})

class PostAction(str, enum.Enum):
    """What publishing did; `PostOutcome.detail` says why for the skips."""

    CREATED_THREAD = "created-thread"
    COMMENTED = "commented"
    SKIPPED_CLEAN = "skipped-clean"          # a clean or inconclusive result is given on request only
    SKIPPED_CLOSED = "skipped-closed"        # the bot's thread was closed: never reopened
    SKIPPED_OPTED_OUT = "skipped-opted-out"
    SKIPPED_DUPLICATE = "skipped-duplicate"  # that commit is already reported there
    SKIPPED_DISABLED = "skipped-disabled"    # the owner turned discussions off
    DRY_RUN = "dry-run"


@dataclass(frozen=True)
class PostOutcome:
    action: PostAction
    discussion_num: int | None = None
    url: str | None = None  # the post on the Hub; for dry-run, the outbox file
    detail: str = ""        # why, for skips


@dataclass(frozen=True)
class _Thread:
    num: int
    open: bool


def reply_kind(discussion_num: int) -> str:
    """The post kind of a result given in answer to a request in discussion `discussion_num`."""
    return f"reply-{discussion_num}"


def describe_post(kind: str, discussion_num: int) -> str:
    """A stored post's kind as people say it: "report in #3", "answer in #2" (a reply to a request there)."""
    if kind == REPORT_KIND:
        return f"report in #{discussion_num}"
    if kind.startswith("reply-"):
        return f"answer in #{discussion_num}"
    return f"{kind} in #{discussion_num}"


class Publisher:
    def __init__(
        self,
        api: HubClient,
        store: Store,
        *,
        bot_name: str,
        dry_run: bool,
        outbox_dir: Path,
        post_clean_results: bool,
        report_base_url: str | None,
        problems_url: str | None = None,
    ) -> None:
        self.api = api
        self.store = store
        self.bot_name = bot_name
        self.dry_run = dry_run
        self.outbox_dir = Path(outbox_dir)
        self.post_clean_results = post_clean_results
        self.report_base_url = report_base_url
        self.problems_url = problems_url

    # -- results ----------------------------------------------------------------------------------------

    def publish(
        self, record: ScanRecord, *, repo_id: str, sha: str, requested: bool, discussion_num: int | None = None
    ) -> PostOutcome:
        """Posts the result of scanning `repo_id` at `sha`, at most once per (repo, sha) and target thread.

        Args:
            requested: someone asked for this scan (a mention); the result is then posted whatever the verdict
                and even on opted-out repos.
            discussion_num: where the request was made (requested only); the answer goes there. None: the bot's
                own thread.

        Raises:
            HubError: a Hub call failed for another reason than disabled discussions: RateLimitedError on 429,
                HubAuthError when the token may not post there.
        """
        _check_target(record, repo_id=repo_id, sha=sha)
        request_num = discussion_num if requested else None
        kind = REPORT_KIND if request_num is None else reply_kind(request_num)
        if self.store.has_post(repo_id, sha, kind):
            return PostOutcome(PostAction.SKIPPED_DUPLICATE, discussion_num, detail=f"{kind} for {sha} already posted")
        if not requested:
            if self.store.is_opted_out(repo_id):
                return PostOutcome(PostAction.SKIPPED_OPTED_OUT, detail="the owner opted out of unprompted posts")
            if not self._worth_posting_unprompted(record.verdict):
                return PostOutcome(PostAction.SKIPPED_CLEAN, detail=f"verdict {record.verdict.value} is only given on request")
        if self.dry_run:
            return self._dry_run_result(record, repo_id=repo_id, sha=sha, kind=kind, discussion_num=discussion_num)
        try:
            if request_num is not None:
                return self._reply(record, repo_id=repo_id, sha=sha, kind=kind, num=request_num)
            return self._post_in_bot_thread(record, repo_id=repo_id, sha=sha)
        except DiscussionsDisabledError:
            logger.info("not posting on %s: discussions are disabled", repo_id)
            return PostOutcome(PostAction.SKIPPED_DISABLED, discussion_num, detail="discussions are disabled on this repo")

    def _worth_posting_unprompted(self, verdict: Verdict) -> bool:
        if verdict in FINDINGS:
            return True
        # An inconclusive scan says nothing an owner can act on; it is given on request only.
        return self.post_clean_results and verdict is Verdict.CLEAN

    def _post_in_bot_thread(self, record: ScanRecord, *, repo_id: str, sha: str) -> PostOutcome:
        thread = self._find_bot_thread(repo_id)
        if thread is not None and not thread.open:
            return self._closed(repo_id, thread.num)
        if thread is None:
            if self.store.has_post(repo_id, sha, REPORT_KIND):
                return PostOutcome(PostAction.SKIPPED_DUPLICATE, detail=f"report for {sha} already posted")
            body = self._render_report(record, repo_id=repo_id, sha=sha)
            created, opening = self.api.create_discussion(repo_id, title=THREAD_TITLE, body=body)
            self.store.record_thread(repo_id=repo_id, discussion_num=created.num)
            self.store.record_post(repo_id=repo_id, sha=sha, discussion_num=created.num, comment_id=opening,
                                   kind=REPORT_KIND)  # fmt: skip
            logger.info("opened %s on %s for %s", created.url, repo_id, sha[:12])
            return PostOutcome(PostAction.CREATED_THREAD, created.num, created.url)
        details = self.api.discussion_details(repo_id, thread.num)
        if not details.is_open:
            return self._closed(repo_id, thread.num)
        body = self._render_revision(record, repo_id=repo_id, sha=sha)
        return self._comment_once(details, body, repo_id=repo_id, sha=sha, kind=REPORT_KIND)

    def _reply(self, record: ScanRecord, *, repo_id: str, sha: str, kind: str, num: int) -> PostOutcome:
        details = self.api.discussion_details(repo_id, num)
        body = self._render_report(record, repo_id=repo_id, sha=sha)
        return self._comment_once(details, body, repo_id=repo_id, sha=sha, kind=kind)

    def _comment_once(
        self, details: HubThread, body: str, *, repo_id: str, sha: str, kind: str
    ) -> PostOutcome:
        existing = self._posted_comment(details, sha)
        if existing is not None:
            self.store.record_post(repo_id=repo_id, sha=sha, discussion_num=details.num, comment_id=existing,
                                   kind=kind)  # fmt: skip
            return PostOutcome(PostAction.SKIPPED_DUPLICATE, details.num, f"{details.url}#{existing}",
                               detail=f"{sha} is already reported in this thread")  # fmt: skip
        if self.store.has_post(repo_id, sha, kind):
            return PostOutcome(PostAction.SKIPPED_DUPLICATE, details.num, detail=f"{kind} for {sha} already posted")
        comment = self.api.comment(repo_id, details.num, body)
        if not self.store.record_post(repo_id=repo_id, sha=sha, discussion_num=details.num, comment_id=comment.id,
                                      kind=kind):  # fmt: skip
            logger.warning("another worker also posted %s for %s@%s", kind, repo_id, sha[:12])
        return PostOutcome(PostAction.COMMENTED, details.num, f"{details.url}#{comment.id}")

    def _posted_comment(self, details: HubThread, sha: str) -> str | None:
        """The id of the bot's comment in this thread that already reports `sha`, if any."""
        marker = scanned_commit_marker(sha)
        for comment in details.comments:
            if comment.author == self.bot_name and marker in comment.content:
                return comment.id
        return None

    def _find_bot_thread(self, repo_id: str) -> _Thread | None:
        """The bot's thread on the repo: from the store, else looked up on the Hub (author + title)."""
        row = self.store.get_thread(repo_id)
        if row is not None:
            return _Thread(row.discussion_num, row.status is ThreadStatus.OPEN)
        found = [
            discussion
            for discussion in self.api.discussions(repo_id, author=self.bot_name, kind="discussion")
            if discussion.author == self.bot_name and discussion.title == THREAD_TITLE
        ]
        if not found:
            return None
        first = min(found, key=lambda discussion: discussion.num)
        self.store.record_thread(repo_id=repo_id, discussion_num=first.num)
        if not first.is_open:
            self.store.mark_thread_closed(repo_id)
        return _Thread(first.num, first.is_open)

    def _closed(self, repo_id: str, num: int) -> PostOutcome:
        self.store.mark_thread_closed(repo_id)
        logger.info("not posting on %s: the bot's thread #%d was closed", repo_id, num)
        return PostOutcome(PostAction.SKIPPED_CLOSED, num, detail=f"thread #{num} was closed; the bot does not reopen it")

    def _render_report(self, record: ScanRecord, *, repo_id: str, sha: str) -> str:
        return render_report(record, repo_id=repo_id, sha=sha, bot_name=self.bot_name,
                             report_base_url=self.report_base_url, problems_url=self.problems_url)  # fmt: skip

    def _render_revision(self, record: ScanRecord, *, repo_id: str, sha: str) -> str:
        return render_revision_comment(record, repo_id=repo_id, sha=sha, bot_name=self.bot_name,
                                       report_base_url=self.report_base_url,
                                       problems_url=self.problems_url)  # fmt: skip

    # -- replies ----------------------------------------------------------------------------------------

    def post_comment(self, *, repo_id: str, discussion_num: int, body: str, label: str) -> PostOutcome:
        """Posts a short reply (acknowledgement, help) in a discussion; in dry-run, writes it to the outbox.

        Args:
            label: names the outbox file in dry-run (e.g. "ack-<comment id>").

        Raises:
            HubError: a Hub call failed for another reason than disabled discussions.
        """
        if not is_safe_repo_id(repo_id):
            raise ValueError(f"not a valid Hub repo id: {repo_id!r}")
        if self.dry_run:
            header = {"repo": repo_id, "would-post": f"comment in discussion #{discussion_num}"}
            path = self._write_outbox(repo_id, f"{_file_safe(label)}.md", header=header, body=body)
            return PostOutcome(PostAction.DRY_RUN, discussion_num, str(path))
        try:
            comment = self.api.comment(repo_id, discussion_num, body)
        except DiscussionsDisabledError:
            return PostOutcome(PostAction.SKIPPED_DISABLED, discussion_num, detail="discussions are disabled on this repo")
        return PostOutcome(PostAction.COMMENTED, discussion_num, self.api.comment_url(repo_id, discussion_num, comment.id))

    # -- dry run ----------------------------------------------------------------------------------------

    def _dry_run_result(
        self, record: ScanRecord, *, repo_id: str, sha: str, kind: str, discussion_num: int | None
    ) -> PostOutcome:
        """Decides from the store alone (no Hub call) and writes the would-be post to the outbox."""
        if kind != REPORT_KIND:
            where = f"comment in discussion #{discussion_num}"
            body = self._render_report(record, repo_id=repo_id, sha=sha)
        else:
            row = self.store.get_thread(repo_id)
            if row is not None and row.status is not ThreadStatus.OPEN:
                return PostOutcome(PostAction.SKIPPED_CLOSED, row.discussion_num, detail="the bot's thread was closed")
            if row is None:
                where = f"new discussion titled {THREAD_TITLE!r}"
                body = self._render_report(record, repo_id=repo_id, sha=sha)
            else:
                discussion_num = row.discussion_num
                where = f"comment in discussion #{discussion_num}"
                body = self._render_revision(record, repo_id=repo_id, sha=sha)
        header = {"repo": repo_id, "sha": sha, "kind": kind, "would-post": where}
        path = self._write_outbox(repo_id, f"{sha}-{kind}.md", header=header, body=body)
        return PostOutcome(PostAction.DRY_RUN, discussion_num, str(path), detail=f"would post: {where}")

    def _write_outbox(self, repo_id: str, name: str, *, header: dict[str, str], body: str) -> Path:
        folder = self.outbox_dir / repo_id.replace("/", "__")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        lines = [f"<!-- {key}: {_comment_safe(value)} -->" for key, value in header.items()]
        path.write_text("\n".join(lines) + "\n\n" + body, encoding="utf-8")
        return path

    # -- badge ------------------------------------------------------------------------------------------

    def offer_badge(self, record: ScanRecord, *, repo_id: str, sha: str, requested: bool = False) -> int | None:
        """Opens (once per repo) a PR adding the verdict badge, linked to the report of `sha`, to the README.

        Returns:
            The badge PR's number (also when one was opened before), or None when no PR was opened: no report
            site configured, opted out (unless requested), dry run, PRs disabled, or a badge already in the README.

        Raises:
            HubError: a Hub call failed for another reason than disabled pull requests (HubAuthError when the
                token may not open one).
        """
        _check_target(record, repo_id=repo_id, sha=sha)
        if not self.report_base_url:
            return None
        existing = self.store.get_badge_pr(repo_id)
        if existing is not None:
            return existing
        if not requested and self.store.is_opted_out(repo_id):
            return None
        line = badge_markdown(report_base_url=self.report_base_url, repo_id=repo_id, sha=sha, verdict=record.verdict)
        description = render_badge_pr(record, repo_id=repo_id, sha=sha, bot_name=self.bot_name,
                                      report_base_url=self.report_base_url, problems_url=self.problems_url)  # fmt: skip
        if self.dry_run:
            header = {"repo": repo_id, "sha": sha, "would-post": f"pull request {BADGE_PR_TITLE!r} adding: {line}"}
            self._write_outbox(repo_id, f"{sha}-badge-pr.md", header=header, body=description)
            return None
        try:
            return self._open_badge_pr(repo_id=repo_id, sha=sha, line=line, description=description)
        except DiscussionsDisabledError:
            logger.info("no badge PR on %s: pull requests are disabled", repo_id)
            return None

    def _open_badge_pr(self, *, repo_id: str, sha: str, line: str, description: str) -> int | None:
        for discussion in self.api.discussions(repo_id, author=self.bot_name, kind="pull_request"):
            if discussion.author == self.bot_name and discussion.title == BADGE_PR_TITLE:
                self.store.record_badge_pr(repo_id=repo_id, sha=sha, pr_num=discussion.num)
                return discussion.num
        head = self.api.head_sha(repo_id)
        readme = self.api.read_text(repo_id, "README.md", revision=head)
        marker = badge_svg_url(self.report_base_url or "", Verdict.CLEAN).rsplit("/", 1)[0] + "/"
        new_readme = add_badge_line(readme, line, already_there=marker)
        if new_readme is None:
            logger.info("no badge PR on %s: the README already has a clip-audit badge", repo_id)
            return None
        pr_num, pr_url = self.api.open_file_pr(repo_id, path="README.md", content=new_readme.encode("utf-8"),
                                               title=BADGE_PR_TITLE, description=description, parent=head)
        self.store.record_badge_pr(repo_id=repo_id, sha=sha, pr_num=pr_num)
        logger.info("opened badge PR %s on %s", pr_url, repo_id)
        return pr_num


def _check_target(record: ScanRecord, *, repo_id: str, sha: str) -> None:
    if not is_safe_repo_id(repo_id):
        raise ValueError(f"not a valid Hub repo id: {repo_id!r}")
    if not is_commit_sha(sha):
        raise ValueError(f"expected the scanned commit's full 40-hex sha, got {sha!r}")
    if record.revision is not None and record.revision != sha:
        raise ValueError(f"the record is for revision {record.revision!r}, not {sha!r}")


def _file_safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", label)[:120] or "post"


_COMMENT_END = re.compile(r"-{2,}>?|[\r\n]")


def _comment_safe(value: str) -> str:
    return _COMMENT_END.sub(" ", value)
