"""Webhook delivery in the Hub's v3 payload shape (see huggingface_hub/_webhooks_payload.py).

Deliveries run on one background thread, in order, so a slow receiver never blocks an API call.
Each attempt is recorded (never the secret) for GET /_emulator/webhook-log.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from .ids import now_iso, object_id_for
from .records import Discussion, Event, Repo

logger = logging.getLogger(__name__)

WEBHOOK_VERSION = 3
_DELIVERY_TIMEOUT_S = 5.0
_LOG_LIMIT = 1000
# Receivers are local; a proxy from the environment must never see the secret.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    secret: str | None = field(default=None, repr=False)
    watched: tuple[str, ...] = ()  # repo ids or owner names; empty means every repo

    def watches(self, repo_id: str) -> bool:
        if not self.watched:
            return True
        owner = repo_id.split("/")[0]
        return any(entry.lower() in (repo_id.lower(), owner.lower()) for entry in self.watched)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    at: str
    url: str
    scope: str
    action: str
    repo: str
    status: int | None
    error: str | None
    payload: dict[str, Any]


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
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._log: list[DeliveryRecord] = []
        self._log_lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="emulator-webhooks", daemon=True)
        self._worker.start()

    def submit(self, repo_id: str, payload: dict[str, Any]) -> None:
        if self.config.watches(repo_id):
            self._queue.put(payload)

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until every queued payload was attempted; True if the queue drained in time."""
        done = threading.Event()
        self._queue.put({"__flush__": done})
        return done.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=_DELIVERY_TIMEOUT_S + 1)

    def log(self) -> list[dict[str, Any]]:
        with self._log_lock:
            return [asdict(record) for record in self._log]

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            if "__flush__" in payload:
                payload["__flush__"].set()
                continue
            self._deliver(payload)

    def _deliver(self, payload: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "clip-audit-hub-emulator"}
        if self.config.secret is not None:
            headers["X-Webhook-Secret"] = self.config.secret
        request = urllib.request.Request(
            self.config.url, data=json.dumps(payload).encode(), headers=headers, method="POST"
        )
        status: int | None = None
        error: str | None = None
        try:
            with _OPENER.open(request, timeout=_DELIVERY_TIMEOUT_S) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error:
            logger.warning("webhook delivery to %s failed: %s", self.config.url, error)
        record = DeliveryRecord(
            at=now_iso(),
            url=self.config.url,
            scope=payload["event"]["scope"],
            action=payload["event"]["action"],
            repo=payload["repo"]["name"],
            status=status,
            error=error,
            payload=payload,
        )
        with self._log_lock:
            self._log.append(record)
            del self._log[:-_LOG_LIMIT]


__all__ = [
    "WebhookConfig",
    "WebhookDispatcher",
    "comment_payload",
    "content_payload",
    "discussion_payload",
    "repo_created_payload",
]
