"""Webhook delivery in the Hub's v3 payload shape (see huggingface_hub/_webhooks_payload.py).

Deliveries run on one background thread, so a slow receiver never blocks an API call. A delivery that fails
(a connection error, a timeout, an answer other than 2xx) is tried again after a backoff that doubles from
`backoff_s` (at most MAX_BACKOFF_S), up to `max_attempts` attempts in all, as the Hub redelivers; new events
are not held up behind a delivery waiting for its retry. Each attempt is recorded (never the secret) for GET
/_emulator/webhook-log, and each delivery's attempts and outcome for GET /_emulator/webhook-deliveries.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .ids import format_date, now_iso, object_id_for
from .records import Discussion, Event, Repo

logger = logging.getLogger(__name__)

WEBHOOK_VERSION = 3
DEFAULT_DELIVERY_TIMEOUT_S = 5.0
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0
_LOG_LIMIT = 1000  # attempts, with their payloads
_DELIVERIES_KEPT = 20_000  # delivery summaries (no payloads): a load test's few thousand all fit
# Receivers are local; a proxy from the environment must never see the secret.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    secret: str | None = field(default=None, repr=False)
    watched: tuple[str, ...] = ()  # repo ids or owner names; empty means every repo
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_s: float = DEFAULT_BACKOFF_S  # before the 2nd attempt; doubled for each later one
    timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.backoff_s < 0 or not self.timeout_s > 0:
            raise ValueError("webhook max_attempts must be >= 1, backoff_s >= 0 and timeout_s > 0")

    def delay_before(self, attempt: int) -> float:
        """Seconds between attempt `attempt - 1` and `attempt` (attempt >= 2)."""
        return min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 2))

    def watches(self, repo_id: str) -> bool:
        if not self.watched:
            return True
        owner = repo_id.split("/")[0]
        return any(entry.lower() in (repo_id.lower(), owner.lower()) for entry in self.watched)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One attempt, for GET /_emulator/webhook-log."""

    at: str
    url: str
    scope: str
    action: str
    repo: str
    status: int | None
    error: str | None
    payload: dict[str, Any]
    delivery: int = 0  # the delivery's id
    attempt: int = 1


@dataclass(slots=True)
class Delivery:
    """One event and what became of it, for GET /_emulator/webhook-deliveries (the payload is not kept)."""

    id: int
    scope: str
    action: str
    repo: str
    comment_id: str | None
    discussion_num: int | None
    outcome: str = "pending"  # pending | delivered | failed (every attempt failed)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # {"at", "status", "error"} per attempt
    next_attempt_at: str | None = None

    @classmethod
    def of(cls, delivery_id: int, payload: dict[str, Any]) -> Delivery:
        comment, discussion = payload.get("comment") or {}, payload.get("discussion") or {}
        return cls(id=delivery_id, scope=payload["event"]["scope"], action=payload["event"]["action"],
                   repo=payload["repo"]["name"], comment_id=comment.get("id"),
                   discussion_num=discussion.get("num"))  # fmt: skip


def _repo_block(repo: Repo, base_url: str) -> dict[str, Any]:
    head_sha = repo.refs.get("main")
    return {
        "type": "model",
        "name": repo.repo_id,
        "id": repo.object_id,
        "private": repo.private,
        "url": {"web": f"{base_url}/{repo.repo_id}", "api": f"{base_url}/api/models/{repo.repo_id}"},
        "owner": {"id": object_id_for(repo.owner)},
        # The live Hub sends headSha; the client's pydantic model spells it head_sha. Send both.
        "headSha": head_sha,
        "head_sha": head_sha,
    }


def _discussion_block(repo: Repo, discussion: Discussion, base_url: str) -> dict[str, Any]:
    block: dict[str, Any] = {
        "id": discussion.id,
        "num": discussion.num,
        "title": discussion.title,
        "status": discussion.status,
        "isPullRequest": discussion.is_pull_request,
        "author": {"id": object_id_for(discussion.author)},
        "url": {
            "web": f"{base_url}/{repo.repo_id}/discussions/{discussion.num}",
            "api": f"{base_url}/api/models/{repo.repo_id}/discussions/{discussion.num}",
        },
        "pinned": False,
    }
    if discussion.is_pull_request:
        block["changes"] = {"base": "refs/heads/main", "mergeCommitId": discussion.merge_commit}
    return block


def _comment_block(repo: Repo, discussion: Discussion, event: Event, base_url: str) -> dict[str, Any]:
    return {
        "id": event.id,
        "author": {"id": object_id_for(event.author)},
        "hidden": bool(event.data.get("hidden", False)),
        "content": event.data.get("raw", ""),
        "url": {"web": f"{base_url}/{repo.repo_id}/discussions/{discussion.num}#{event.id}"},
    }


def _envelope(action: str, scope: str, repo: Repo, base_url: str, webhook_id: str) -> dict[str, Any]:
    return {
        "event": {"action": action, "scope": scope},
        "repo": _repo_block(repo, base_url),
        "webhook": {"id": webhook_id, "version": WEBHOOK_VERSION},
    }


def discussion_payload(
    *, action: str, repo: Repo, discussion: Discussion, comment: Event | None, base_url: str, webhook_id: str
) -> dict[str, Any]:
    """scope "discussion": a discussion or PR was created (action create, with its opening comment) or changed."""
    payload = _envelope(action, "discussion", repo, base_url, webhook_id)
    payload["discussion"] = _discussion_block(repo, discussion, base_url)
    if comment is not None:
        payload["comment"] = _comment_block(repo, discussion, comment, base_url)
    return payload


def comment_payload(
    *, repo: Repo, discussion: Discussion, comment: Event, base_url: str, webhook_id: str
) -> dict[str, Any]:
    payload = _envelope("create", "discussion.comment", repo, base_url, webhook_id)
    payload["discussion"] = _discussion_block(repo, discussion, base_url)
    payload["comment"] = _comment_block(repo, discussion, comment, base_url)
    return payload


def content_payload(
    *, repo: Repo, ref: str, old_sha: str | None, new_sha: str, base_url: str, webhook_id: str
) -> dict[str, Any]:
    payload = _envelope("update", "repo.content", repo, base_url, webhook_id)
    full_ref = "refs/heads/main" if ref == "main" else ref
    payload["updatedRefs"] = [{"ref": full_ref, "oldSha": old_sha, "newSha": new_sha}]
    return payload


def repo_created_payload(*, repo: Repo, base_url: str, webhook_id: str) -> dict[str, Any]:
    return _envelope("create", "repo", repo, base_url, webhook_id)


class WebhookDispatcher:
    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.webhook_id = object_id_for(f"webhook:{config.url}")
        # (due time.monotonic(), delivery id, payload): new events and retries, soonest first, FIFO among equals
        self._due: list[tuple[float, int, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self._in_flight = 0
        self._closed = False
        self._changed = threading.Condition()
        self._log: list[DeliveryRecord] = []
        self._deliveries: dict[int, Delivery] = {}
        self._worker = threading.Thread(target=self._run, name="emulator-webhooks", daemon=True)
        self._worker.start()

    def submit(self, repo_id: str, payload: dict[str, Any]) -> None:
        if not self.config.watches(repo_id):
            return
        with self._changed:
            delivery = Delivery.of(next(self._ids), payload)
            self._deliveries[delivery.id] = delivery
            while len(self._deliveries) > _DELIVERIES_KEPT:
                del self._deliveries[next(iter(self._deliveries))]
            heapq.heappush(self._due, (time.monotonic(), delivery.id, payload))
            self._changed.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until no delivery is queued, in flight or waiting for a retry; True if that happened in time."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._due and not self._in_flight, timeout)

    def close(self) -> None:
        """Stops after the attempt in flight, if any; deliveries still waiting (for a retry) are dropped."""
        with self._changed:
            self._closed = True
            dropped = len(self._due)
            self._changed.notify_all()
        if dropped:
            logger.warning("webhook sender closed with %d delivery(ies) still waiting", dropped)
        self._worker.join(timeout=self.config.timeout_s + 1)

    def log(self) -> list[dict[str, Any]]:
        with self._changed:
            return [asdict(record) for record in self._log]

    def deliveries(self) -> list[dict[str, Any]]:
        with self._changed:
            return [asdict(delivery) for delivery in self._deliveries.values()]

    def _next(self) -> tuple[int, dict[str, Any]] | None:
        """The next delivery when it is due (waiting until then), or None once closed."""
        with self._changed:
            while not self._closed:
                if self._due and self._due[0][0] <= time.monotonic():
                    _, delivery_id, payload = heapq.heappop(self._due)
                    self._in_flight += 1
                    return delivery_id, payload
                self._changed.wait(self._due[0][0] - time.monotonic() if self._due else None)
            return None

    def _run(self) -> None:
        while (item := self._next()) is not None:
            delivery_id, payload = item
            try:
                self._attempt(delivery_id, payload)
            finally:
                with self._changed:
                    self._in_flight -= 1
                    self._changed.notify_all()

    def _post(self, payload: dict[str, Any]) -> tuple[int | None, str | None]:
        """(status, error) of one POST; error is None only for a 2xx answer."""
        headers = {"Content-Type": "application/json", "User-Agent": "clip-audit-hub-emulator"}
        if self.config.secret is not None:
            headers["X-Webhook-Secret"] = self.config.secret
        request = urllib.request.Request(
            self.config.url, data=json.dumps(payload).encode(), headers=headers, method="POST"
        )
        try:
            with _OPENER.open(request, timeout=self.config.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            return exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return status, None if 200 <= status < 300 else f"HTTP {status}"

    def _attempt(self, delivery_id: int, payload: dict[str, Any]) -> None:
        status, error = self._post(payload)
        at = now_iso()
        with self._changed:
            delivery = self._deliveries.get(delivery_id) or Delivery.of(delivery_id, payload)
            delivery.attempts.append({"at": at, "status": status, "error": error})
            attempt = len(delivery.attempts)
            delivery.next_attempt_at = None
            if error is None:
                delivery.outcome = "delivered"
            elif attempt < self.config.max_attempts and not self._closed:
                delay = self.config.delay_before(attempt + 1)
                heapq.heappush(self._due, (time.monotonic() + delay, delivery_id, payload))
                delivery.next_attempt_at = format_date(datetime.now(timezone.utc) + timedelta(seconds=delay))
            else:
                delivery.outcome = "failed"
            self._log.append(DeliveryRecord(at=at, url=self.config.url, scope=delivery.scope, action=delivery.action,
                                            repo=delivery.repo, status=status, error=error, payload=payload,
                                            delivery=delivery_id, attempt=attempt))  # fmt: skip
            del self._log[:-_LOG_LIMIT]
        if error:
            retry = "gave up" if delivery.outcome == "failed" else f"retry at {delivery.next_attempt_at}"
            logger.warning("webhook delivery %d to %s failed (attempt %d): %s; %s", delivery_id, self.config.url,
                           attempt, error, retry)  # fmt: skip


__all__ = [
    "WebhookConfig",
    "WebhookDispatcher",
    "comment_payload",
    "content_payload",
    "discussion_payload",
    "repo_created_payload",
]
