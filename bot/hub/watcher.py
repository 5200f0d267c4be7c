"""Finds new CLIP-family uploads and revisions on the Hub and queues a scan for each new (repo, sha).

Each poll reads a few filtered listings (task, tags, libraries), each twice: by created_at, to see new
repos, and by last_modified, because repos are often created empty and filled later. Listings come newest
first; each (listing, sort) keeps a cursor (the newest timestamp seen) and reading stops at it. The store's
unique (repo_id, sha) keys make re-reading the boundary harmless. Repos that cannot be scanned are recorded
as skips with their reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

import schedule

from bot.errors import ClipAuditError, HubError, RateLimitedError, SkipReason, SkipRepo
from bot.settings import Settings
from bot.state import Job, Store

from .client import HubClient
from .families import LISTING_EXPAND, family_hint, plan_scan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listing:
    name: str                 # part of the cursor name
    query: dict[str, Any]     # extra list_models arguments


LISTINGS: tuple[Listing, ...] = (
    Listing("zero-shot", {"pipeline_tag": "zero-shot-image-classification"}),
    Listing("clip", {"filter": "clip"}),
    Listing("siglip", {"filter": "siglip"}),
    Listing("open_clip", {"filter": "open_clip"}),
    Listing("diffusers", {"filter": "diffusers"}),  # kept only with text_encoder*/ weights (family_hint)
)
SORTS = ("created_at", "last_modified")


def cursor_name(listing: Listing, sort: str) -> str:
    return f"watch:{sort}:{listing.name}"


class Watcher:
    def __init__(self, store: Store, api: HubClient, settings: Settings, *,
                 submit: Callable[[Job], object] | None = None) -> None:  # fmt: skip
        """`submit` hands each newly queued job to a broker (bot/distributed/enqueue.py); None: the built-in
        worker takes it from the store."""
        self.store = store
        self.api = api
        self.settings = settings
        self.submit = submit
        self._not_before = 0.0  # set after a rate limit: no poll before this time

    def poll_once(self) -> list[Job]:
        """One pass over every listing; returns the jobs it queued.

        Raises:
            RateLimitedError: the Hub asked to slow down (cursors stay where the pass stopped).
            HubError: a listing could not be read.
        """
        queued: list[Job] = []
        seen: set[tuple[str, str]] = set()  # a repo shows up in several listings in one pass
        for sort in SORTS:
            for listing in LISTINGS:
                queued += self._poll_listing(listing, sort, seen)
        if queued:
            logger.info("queued %d scan(s): %s", len(queued), ", ".join(f"{j.repo_id}@{j.sha[:8]}" for j in queued))
        return queued

    def _poll_listing(self, listing: Listing, sort: str, seen: set[tuple[str, str]]) -> list[Job]:
        name = cursor_name(listing, sort)
        stored = self.store.get_cursor(name)
        cursor = datetime.fromisoformat(stored) if stored else None
        models: Iterator[Any] = iter(self.api.list_models(sort=sort, expand=LISTING_EXPAND, **listing.query))
        if cursor is None:
            # First poll: the newest few only, not the Hub's whole history.
            models = islice(models, max(1, self.settings.initial_backfill))
        newest: datetime | None = None
        retry_from: datetime | None = None  # oldest repo that failed for a passing reason: read it again next time
        queued: list[Job] = []
        for index, model in enumerate(models):
            stamp = model.created_at if sort == "created_at" else model.last_modified
            if stamp is None:
                continue
            if cursor is not None and stamp < cursor:
                break
            newest = stamp if newest is None or stamp > newest else newest
            if cursor is None and index >= self.settings.initial_backfill:
                continue
            try:
                job = self._consider(model, seen)
            except RateLimitedError:
                raise
            except HubError as exc:
                logger.warning("%s: %s (will look again next poll)", model.id, exc)
                retry_from = stamp
                continue
            if job is not None:
                queued.append(job)
        new_cursor = retry_from or newest
        if new_cursor is not None and (cursor is None or new_cursor > cursor or retry_from is not None):
            self.store.set_cursor(name, new_cursor.isoformat())
        return queued

    def _consider(self, model: Any, seen: set[tuple[str, str]]) -> Job | None:
        """Queues a scan of this listed repo's sha if it is CLIP-family, new to us and scannable."""
        repo_id, sha = model.id, model.sha
        if sha is None or (repo_id, sha) in seen:
            return None
        seen.add((repo_id, sha))
        hint = family_hint(model)
        if hint is None:
            return None
        known = self.store.get_repo(repo_id)
        if known is not None and known.sha == sha:
            return None
        last_modified = model.last_modified.isoformat() if model.last_modified else None
        if self.store.is_opted_out(repo_id):
            opted_out = SkipRepo(SkipReason.OPTED_OUT, "the owner asked the bot to leave this repo alone")
            self._record_skip(repo_id, sha, opted_out, last_modified=last_modified, family=hint)
            return None
        try:
            plan = plan_scan(self.api, repo_id, sha=sha, max_bytes=self.settings.max_download_bytes, family=hint)
        except SkipRepo as skip:
            self._record_skip(repo_id, sha, skip, last_modified=last_modified, family=hint)
            return None
        job = self.store.enqueue(
            repo_id=repo_id, sha=sha, revision="main", reason="new-upload" if known is None else "new-revision"
        )
        self.store.upsert_repo(repo_id, sha, last_modified=last_modified, family=plan.family)
        if job is not None and self.submit is not None:
            self.submit(job)
        return job

    def _record_skip(self, repo_id: str, sha: str, skip: SkipRepo, *, last_modified: str | None, family: str) -> None:
        logger.info("skip %s@%s: %s", repo_id, sha[:8], skip.reason)
        self.store.record_skip(repo_id=repo_id, sha=sha, skip=skip)
        self.store.upsert_repo(repo_id, sha, last_modified=last_modified, family=family)

    # -- the polling loop ------------------------------------------------------------------------------------

    def _safe_poll(self) -> None:
        if time.time() < self._not_before:
            return
        try:
            self.poll_once()
        except RateLimitedError as exc:
            self._not_before = time.time() + exc.retry_after
            logger.warning("poll stopped: %s", exc)
        except ClipAuditError as exc:
            logger.warning("poll failed: %s (next poll in %.0fs)", exc, self.settings.poll_interval_seconds)

    def run_forever(self, stop_event: threading.Event,
                    also: Sequence[tuple[float, Callable[[], None]]] = ()) -> None:
        """Polls now, then every poll_interval_seconds, until `stop_event` is set.

        Args:
            also: (interval in seconds, task) pairs run on the same loop, first right after the first poll
                (the mention polling fallback); a task must not raise.
        """
        scheduler = schedule.Scheduler()  # our own, not schedule's module-level default
        scheduler.every(self.settings.poll_interval_seconds).seconds.do(self._safe_poll)
        for interval, task in also:
            scheduler.every(interval).seconds.do(task)
        self._safe_poll()
        for _, task in also:
            task()
        while not stop_event.is_set():
            scheduler.run_pending()
            idle = scheduler.idle_seconds
            stop_event.wait(timeout=min(max(idle if idle is not None else 1.0, 0.05), 1.0))
