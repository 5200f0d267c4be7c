"""Acting on a mention: parse the command, do what it asks, and answer in the thread where it was asked.

Scans are only queued here (the worker runs them and posts the result in the requesting thread); a commit
that was already scanned gets its result posted straight away. Opt-out and opt-in are honoured from the repo's
namespace only. The bot never answers its own comments.

Every reply ends with an invisible marker naming the comment it answers (render.reply_marker): a mention
handled again (a retry after the reply was posted but before that was recorded) finds it and is not answered
twice. Which mentions to handle, and when to retry, is the MentionProcessor's business (processor.py).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.errors import HubNotFoundError, SkipReason, SkipRepo
from bot.hub.client import HubClient
from bot.mentions.commands import Command, parse_command
from bot.mentions.events import MentionEvent
from bot.publish.poster import PostAction, PostOutcome, Publisher
from bot.publish.render import AckKind, render_ack, render_help, reply_marker
from bot.scan_record import ScanRecord
from bot.state.schema import Job, JobStatus
from bot.state.store import Store

logger = logging.getLogger(__name__)

MENTION_REASON = "mention"
DEFAULT_REVISION = "main"

class DispatchAction(str, enum.Enum):
    IGNORED = "ignored"              # not a command for the bot, already answered, or not visible to it
    ANSWERED = "answered"            # an acknowledgement or help was posted where it was asked
    POSTED_RESULT = "posted-result"  # the commit was already scanned: its result was posted


@dataclass(frozen=True)
class DispatchOutcome:
    action: DispatchAction
    command: Command | None = None
    detail: str = ""             # the acknowledgement kind, or why the event was ignored
    post: PostOutcome | None = None


@dataclass(frozen=True)
class _Comment:
    author: str
    text: str
    answered: bool = False  # the thread already holds the bot's reply to it


class MentionDispatcher:
    def __init__(self, api: HubClient, store: Store, publisher: Publisher, *, bot_name: str,
                 submit: Callable[[Job], object] | None = None) -> None:  # fmt: skip
        """`submit` hands each scan a mention queued to a broker (bot/distributed/enqueue.py); None: the
        built-in worker takes it from the store."""
        self.api = api
        self.store = store
        self.publisher = publisher
        self.bot_name = bot_name
        self.submit = submit

    def handle(self, event: MentionEvent, *, reread: bool = False) -> DispatchOutcome:
        """Acts on one mention (the caller makes sure each comment is handled once).

        Args:
            reread: read the thread even when the event names its author: for a retry, whose reply may already
                be there (an event without an author, a webhook's, always reads it).

        Raises:
            HubError: a Hub call failed: RateLimitedError (429) and HubUnavailableError (5xx, network) are
                worth retrying; HubAuthError and DiscussionsDisabledError are not. A thread or repo that is gone
                is not an error: the mention is ignored.
        """
        comment = self._comment(event, reread=reread)
        if comment is None:
            return DispatchOutcome(DispatchAction.IGNORED, detail="comment not found, hidden, or not a comment")
        if comment.answered:
            return DispatchOutcome(DispatchAction.IGNORED, detail="already answered in the thread")
        if comment.author.lower() == self.bot_name.lower():
            return DispatchOutcome(DispatchAction.IGNORED, detail="the bot's own comment")
        command = parse_command(comment.text, bot_name=self.bot_name)
        if command is None:
            return DispatchOutcome(DispatchAction.IGNORED, detail="no command addressed to the bot")
        logger.info("%s asked %s on %s#%d", comment.author, command.kind, event.repo_id, event.discussion_num)
        if command.kind == "scan":
            return self._scan(event, comment, command)
        if command.kind == "badge":
            return self._badge(event, comment, command)
        if command.kind in ("opt-out", "opt-in"):
            return self._opt(event, comment, command)
        body = render_help(repo_id=event.repo_id, bot_name=self.bot_name, requester=comment.author,
                           problems_url=self.publisher.problems_url)  # fmt: skip
        return DispatchOutcome(DispatchAction.ANSWERED, command, "help", self._post(event, body, "help"))

    # -- commands ---------------------------------------------------------------------------------------

    def _scan(self, event: MentionEvent, comment: _Comment, command: Command) -> DispatchOutcome:
        revision = command.revision or DEFAULT_REVISION
        try:
            sha = self.api.model_info(event.repo_id, revision=revision).sha
        except SkipRepo as skip:
            if skip.code is SkipReason.REVISION_GONE:
                return self._ack(event, comment, command, "revision-not-found", revision=revision)
            return DispatchOutcome(DispatchAction.IGNORED, command, "repo not visible to the bot")
        if sha is None:
            return self._ack(event, comment, command, "revision-not-found", revision=revision)
        asked = command.revision
        scan = self.store.get_scan(event.repo_id, sha)
        if scan is not None:
            record = ScanRecord.from_json(scan.record_json)
            post = self.publisher.publish(record, repo_id=event.repo_id, sha=sha, requested=True,
                                          discussion_num=event.discussion_num)  # fmt: skip
            if post.action is PostAction.SKIPPED_DUPLICATE:
                elsewhere = post.discussion_num if post.discussion_num != event.discussion_num else None
                return self._ack(event, comment, command, "already-reported", sha=sha, existing_num=elsewhere)
            return DispatchOutcome(DispatchAction.POSTED_RESULT, command, post.action, post)
        job = self.store.enqueue(repo_id=event.repo_id, sha=sha, reason=MENTION_REASON, requested_by=comment.author,
                                 discussion_num=event.discussion_num, revision=revision)  # fmt: skip
        if job is not None:
            if self.submit is not None:
                self.submit(job)
            return self._ack(event, comment, command, "scan-queued", revision=asked, sha=sha)
        earlier = self.store.find_job(event.repo_id, sha)
        if (earlier is not None and earlier.status in (JobStatus.QUEUED, JobStatus.RUNNING)
                and (earlier.requested_by, earlier.discussion_num) == (comment.author, event.discussion_num)):
            # this very request, queued on an earlier attempt whose acknowledgement did not get through
            return self._ack(event, comment, command, "scan-queued", revision=asked, sha=sha)
        if earlier is not None and earlier.status is JobStatus.SKIPPED:
            return self._ack(event, comment, command, "scan-not-possible", sha=sha, reason=earlier.last_error)
        if earlier is not None and earlier.status is JobStatus.FAILED:
            return self._ack(event, comment, command, "scan-not-possible", sha=sha, reason="the scan failed")
        return self._ack(event, comment, command, "scan-in-progress", revision=asked, sha=sha)

    def _badge(self, event: MentionEvent, comment: _Comment, command: Command) -> DispatchOutcome:
        existing = self.store.get_badge_pr(event.repo_id)
        if existing is not None:
            return self._ack(event, comment, command, "badge-already-offered", pr_num=existing)
        try:
            head = self.api.model_info(event.repo_id).sha
        except SkipRepo:
            return DispatchOutcome(DispatchAction.IGNORED, command, "repo not visible to the bot")
        scan = self.store.get_scan(event.repo_id, head) if head else None
        if scan is None or head is None:
            return self._ack(event, comment, command, "badge-needs-scan")
        record = ScanRecord.from_json(scan.record_json)
        pr_num = self.publisher.offer_badge(record, repo_id=event.repo_id, sha=head, requested=True)
        if pr_num is None:
            return self._ack(event, comment, command, "badge-unavailable")
        return self._ack(event, comment, command, "badge-offered", pr_num=pr_num)

    def _opt(self, event: MentionEvent, comment: _Comment, command: Command) -> DispatchOutcome:
        namespace = event.repo_id.split("/")[0]
        if comment.author.lower() != namespace.lower():
            # Org members cannot be told from outsiders through the public API; only the namespace itself counts.
            return self._ack(event, comment, command, "not-owner")
        opting_out = command.kind == "opt-out"
        self.store.set_opt_out(event.repo_id, opting_out)
        return self._ack(event, comment, command, "opted-out" if opting_out else "opted-in")

    # -- helpers ----------------------------------------------------------------------------------------

    def _comment(self, event: MentionEvent, *, reread: bool) -> _Comment | None:
        """Who wrote the comment, what it says, and whether the bot answered it already; read from the Hub
        when the source gave no author name or `reread` asks. None: the comment is gone or hidden.

        A token the Hub refuses (HubAuthError) or discussions turned off propagate: the caller records why."""
        if event.author is not None and not reread:
            return _Comment(event.author, event.text)
        try:
            details = self.api.discussion_details(event.repo_id, event.discussion_num)
        except (SkipRepo, HubNotFoundError):
            return None  # the repo or the thread is gone: nothing to answer
        marker = reply_marker(event.comment_id)
        answered = bool(marker) and any(item.author.lower() == self.bot_name.lower() and marker in item.content
                                        for item in details.comments)  # fmt: skip
        for item in details.comments:
            if item.id == event.comment_id and not item.hidden:
                return _Comment(item.author, item.content, answered)
        return None

    def _ack(
        self, event: MentionEvent, comment: _Comment, command: Command, kind: AckKind, *, revision: str | None = None,
        sha: str | None = None, pr_num: int | None = None, existing_num: int | None = None, reason: str | None = None,
    ) -> DispatchOutcome:  # fmt: skip
        body = render_ack(kind, repo_id=event.repo_id, bot_name=self.bot_name, requester=comment.author,
                          revision=revision, sha=sha, pr_num=pr_num, existing_num=existing_num,
                          reason=reason, problems_url=self.publisher.problems_url)  # fmt: skip
        return DispatchOutcome(DispatchAction.ANSWERED, command, kind, self._post(event, body, kind))

    def _post(self, event: MentionEvent, body: str, label: str) -> PostOutcome:
        marker = reply_marker(event.comment_id)
        return self.publisher.post_comment(repo_id=event.repo_id, discussion_num=event.discussion_num,
                                           body=f"{body.rstrip()}\n\n{marker}\n" if marker else body,
                                           label=f"{label}-{event.comment_id}")  # fmt: skip
