"""Handling stored mentions: the webhook and polling only record a mention (state/store.py, mention_events);
a MentionProcessor takes each due one, hands it to the dispatcher, and records what came of it.

- a mention is marked handled only once the dispatcher returned, that is once its reply was posted (or there
  was nothing to answer: the outcome says which);
- RateLimitedError, HubUnavailableError (5xx, network) and StoreError are transient: the mention is retried
  after settings.mention_backoff_seconds[attempt - 1] (the last delay repeats; at least Retry-After for rate
  limits), and failed for good after settings.mention_max_attempts tries. An error that is not the bot's own
  (a bug) is retried the same way, with its traceback logged;
- any other error of the bot's (discussions disabled, a token the Hub refuses, a 4xx) is permanent: the mention
  is failed at once with the reason;
- a mention is leased while it is handled (settings.lease_seconds), so the processor inside `serve` and the one
  `watch` runs never handle it at the same time; a processor that dies leaves it to the next one when the lease
  ends. That next try rereads the thread, and the reply marker keeps it from answering twice.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from bot.errors import ClipAuditError, HubUnavailableError, RateLimitedError, StoreError
from bot.mentions.dispatch import DispatchOutcome, MentionDispatcher
from bot.mentions.events import MentionEvent
from bot.state.schema import MentionRow
from bot.state.store import Store

logger = logging.getLogger(__name__)

WEBHOOK_SOURCE = "webhook"
_TRANSIENT = (RateLimitedError, HubUnavailableError, StoreError)
_OUTCOMES_KEPT = 1000  # recent outcomes kept in memory for wait_for_command (the demo, tests)
_MIN_WAIT_SECONDS = 0.05  # the thread never spins, even when a clock disagrees with the store's timestamps


def store_mention(store: Store, event: MentionEvent, *, source: str) -> bool:
    """Records `event` as a pending mention; False when its id is stored already (see Store.record_mention)."""
    return store.record_mention(event_id=event.event_id, repo_id=event.repo_id, discussion_num=event.discussion_num,
                                comment_id=event.comment_id, author=event.author, author_id=event.author_id,
                                text=event.text, is_pull_request=event.is_pull_request, source=source)  # fmt: skip


def _event(row: MentionRow) -> MentionEvent:
    return MentionEvent(event_id=row.event_id, repo_id=row.repo_id, discussion_num=row.discussion_num,
                        comment_id=row.comment_id, author=row.author, text=row.text,
                        is_pull_request=row.is_pull_request, author_id=row.author_id)  # fmt: skip


def describe(outcome: DispatchOutcome) -> str:
    """What handling a mention did, as recorded in mention_events.outcome ("answered: scan-queued")."""
    action = getattr(outcome.action, "value", outcome.action)
    return f"{action}: {outcome.detail}" if outcome.detail else str(action)


class MentionProcessor:
    def __init__(
        self,
        store: Store,
        dispatcher: MentionDispatcher,
        *,
        max_attempts: int,
        backoff_seconds: Sequence[float],
        lease_seconds: float,
        idle_seconds: float,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.max_attempts = max_attempts
        self.backoff_seconds = tuple(backoff_seconds)
        self.lease_seconds = lease_seconds
        self.idle_seconds = idle_seconds
        self.owner = owner or f"mentions:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.clock = clock
        self.handled: collections.deque[DispatchOutcome] = collections.deque(maxlen=_OUTCOMES_KEPT)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"MentionProcessor({self.owner!r}, store={self.store!r})"

    # -- receiving ----------------------------------------------------------------------------------------------

    def receive(self, event: MentionEvent) -> bool:
        """The webhook's hand-off: stores the event (one transaction) and wakes the processing thread.
        True for a new event, False for one stored before (a redelivery).

        Raises:
            StoreError: the state database could not be written (the webhook answers 503: the Hub retries).
        """
        new = store_mention(self.store, event, source=WEBHOOK_SOURCE)
        if new:
            self._wake.set()
        return new

    # -- processing ---------------------------------------------------------------------------------------------

    def process_due(self) -> list[DispatchOutcome]:
        """Handles every stored mention that is due now, one at a time; returns what came of those handled.

        Raises:
            StoreError: no mention could be leased (the database is unusable); nothing was changed.
        """
        outcomes = []
        while (row := self.store.lease_mention(owner=self.owner, lease_seconds=self.lease_seconds,
                                               max_attempts=self.max_attempts, now=self.clock())) is not None:
            outcome = self._process(row)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _process(self, row: MentionRow) -> DispatchOutcome | None:
        logger.info("mention %s on %s#%d (%s, attempt %d)", row.event_id, row.repo_id, row.discussion_num,
                    row.source, row.attempts)  # fmt: skip
        try:
            # a retry rereads the thread: the reply may have been posted by the attempt that did not record it
            outcome = self.dispatcher.handle(_event(row), reread=row.attempts > 1)
        except Exception as error:  # one failing mention must not stop the others
            self._record_failure(row, error)
            return None
        self.handled.append(outcome)
        try:
            if not self.store.finish_mention(row.event_id, owner=self.owner, outcome=describe(outcome)):
                logger.warning("mention %s was handled after its lease was lost", row.event_id)
        except StoreError as error:  # it will be taken again when the lease ends; the reply marker stops a 2nd reply
            logger.error("mention %s: cannot record that it was handled (%s)", row.event_id, error)
        return outcome

    def _record_failure(self, row: MentionRow, error: Exception) -> None:
        message = f"{type(error).__name__}: {error}"
        if isinstance(error, ClipAuditError):
            logger.warning("mention %s on %s#%d failed: %s", row.event_id, row.repo_id, row.discussion_num, message)
        else:  # not one of ours: a bug somewhere, so the traceback is worth having in the log
            logger.error("mention %s failed", row.event_id, exc_info=error)
        retry_at = self._retry_at(row, error)
        try:
            self.store.fail_mention(row.event_id, owner=self.owner, error=message, retry_at=retry_at)
        except StoreError as store_error:
            logger.error("mention %s: cannot record the failure (%s); retried when its lease ends", row.event_id,
                         store_error)  # fmt: skip
            return
        if retry_at is None:
            logger.warning("mention %s failed for good after %d attempt(s): %s", row.event_id, row.attempts, message)

    def _retry_at(self, row: MentionRow, error: Exception) -> float | None:
        permanent = isinstance(error, ClipAuditError) and not isinstance(error, _TRANSIENT)
        if permanent or row.attempts >= self.max_attempts:
            return None
        delays = self.backoff_seconds
        delay = delays[min(row.attempts, len(delays)) - 1]
        if isinstance(error, RateLimitedError):
            delay = max(delay, error.retry_after)
        return self.clock() + delay

    # -- the background thread (inside `serve`) ------------------------------------------------------------------

    def start(self) -> MentionProcessor:
        """Handles stored mentions on a thread of its own: those left from before at once (a restart), then each
        new one as it is received, and retries when they are due."""
        self._thread = threading.Thread(target=self._run, name="mentions", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Lets the mention being handled finish (up to `timeout`), then ends the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self.process_due()
                except StoreError as error:
                    logger.error("cannot take stored mentions: %s", error)
                self._wake.wait(self._until_due())
                self._wake.clear()
        finally:
            self.store.close_thread_connection()

    def _until_due(self) -> float:
        """How long to sleep: until the next retry or lease end, at most idle_seconds (another process, such as
        `watch` polling, may store mentions too)."""
        try:
            due = self.store.next_mention_due()
        except StoreError:
            due = None
        if due is None:
            return self.idle_seconds
        return min(self.idle_seconds, max(_MIN_WAIT_SECONDS, due - self.clock()))

    def wait_for_command(self, timeout: float) -> bool:
        """Blocks until a mention that addressed the bot was handled (bounded). Webhooks arrive asynchronously
        and a thread's opening post comes as a delivery of its own, so "something was handled" does not mean
        the comment with the command was."""
        deadline = time.monotonic() + timeout
        while not any(outcome.command for outcome in list(self.handled)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return any(outcome.command for outcome in list(self.handled))
