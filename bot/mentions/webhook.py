"""The webhook receiver: verify the shared secret, turn a Hub v3 comment payload into a MentionEvent, hand it on.

The request does no Hub or model work: `handle` is expected to record or enqueue the event and return at once,
and the answer (202) goes back straight away. Anything that is not a new, visible comment by someone other
than the bot is answered 200 "ignored".
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from bot.errors import ConfigError, WebhookError
from bot.mentions.events import MentionEvent

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Webhook-Secret"
MAX_BODY_BYTES = 1024 * 1024
_SCOPES = frozenset({"discussion", "discussion.comment"})

__all__ = ["MentionEvent", "create_app", "mention_from_payload"]


def _field(block: Any, name: str, kind: type) -> Any:
    value = block.get(name) if isinstance(block, dict) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WebhookError(f"payload field {name!r} is missing or has the wrong type")
    return value


def mention_from_payload(payload: Any, *, bot_user_id: str | None) -> MentionEvent | None:
    """The comment a Hub v3 payload carries, or None when the payload is not a new, visible, human comment.

    Raises:
        WebhookError: a discussion/comment payload without the fields the Hub always sends.
    """
    if not isinstance(payload, dict):
        raise WebhookError("payload is not a JSON object")
    event = payload.get("event")
    if not isinstance(event, dict) or event.get("scope") not in _SCOPES or event.get("action") != "create":
        return None
    repo = payload.get("repo")
    if not isinstance(repo, dict) or repo.get("type") != "model":
        return None
    comment = payload.get("comment")
    if comment is None:
        return None  # a discussion created without an opening comment
    discussion = payload.get("discussion")
    num = _field(discussion, "num", int)
    author_id = _field(_field(comment, "author", dict), "id", str)
    if bot_user_id is not None and author_id == bot_user_id:
        return None
    if comment.get("hidden") is True:
        return None
    comment_id = _field(comment, "id", str)
    return MentionEvent(
        event_id=comment_id,
        repo_id=_field(repo, "name", str),
        discussion_num=num,
        comment_id=comment_id,
        author=None,
        text=_field(comment, "content", str),
        is_pull_request=bool(discussion.get("isPullRequest", False)),
        author_id=author_id,
    )


def _answer(status: int, word: str) -> JSONResponse:
    return JSONResponse({"status": word}, status_code=status)


def create_app(*, secret: str, handle: Callable[[MentionEvent], None], bot_user_id: str | None) -> FastAPI:
    """The receiver: POST /webhook (the Hub's deliveries) and GET /health.

    Args:
        secret: the shared secret configured on the Hub webhook; compared in constant time.
        handle: called once per accepted event; must only record or enqueue it (it runs inside the request).
        bot_user_id: the bot's Hub user id; its own comments are ignored. None ignores nobody.
    """
    if not secret:
        raise ConfigError("the webhook secret must not be empty")
    expected = secret.encode("utf-8")
    app = FastAPI(title="clip-audit webhook", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        provided = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(provided, expected):
            logger.warning("webhook delivery with a wrong or missing secret from %s", request.client)
            return _answer(401, "unauthorized")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return _answer(413, "too large")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _answer(413, "too large")
        try:
            event = mention_from_payload(json.loads(body), bot_user_id=bot_user_id)
        except (ValueError, WebhookError) as error:  # json.JSONDecodeError is a ValueError
            logger.warning("malformed webhook payload: %s", error)
            return _answer(400, "malformed")
        if event is None:
            return _answer(200, "ignored")
        try:
            await run_in_threadpool(handle, event)
        except Exception:  # noqa: BLE001 - the Hub retries a failed delivery; the error is logged here
            logger.exception("could not hand on webhook event %s", event.event_id)
            return _answer(503, "unavailable")
        return _answer(202, "accepted")

    return app
