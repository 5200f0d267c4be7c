"""The webhook receiver: verify the shared secret, turn a Hub v3 comment payload into a MentionEvent, hand it on.

The request does no Hub or model work: `handle` records the event in the state database (one transaction) and
returns, and only then does the answer go back: 202 for a new event, 200 "duplicate" for one recorded before
(the Hub redelivering). Anything that is not a new, visible comment by someone other than the bot is answered
200 "ignored". Every payload gets a 2xx or a 4xx; the one 5xx is a 503 with Retry-After when the event could
not be recorded (the Hub delivers it again later).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from bot.errors import ClipAuditError, ConfigError, WebhookError
from bot.hub.ids import is_safe_repo_id
from bot.mentions.events import MentionEvent

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Webhook-Secret"
RETRY_AFTER_SECONDS = 30  # asked of the Hub when the state database cannot take an event right now
MAX_BODY_BYTES = 1024 * 1024
MAX_DISCUSSION_NUM = 2**31 - 1
MAX_JSON_DEPTH = 32  # the Hub's payloads nest 4 deep; anything deeper is refused before it is parsed
_SCOPES = frozenset({"discussion", "discussion.comment"})

__all__ = ["MentionEvent", "create_app", "mention_from_payload", "parse_body"]


class _Strict(BaseModel):
    """Hub webhook payload blocks (version 3): the fields the bot reads must have exactly the Hub's
    types (no coercion of "7" to 7); fields it does not read are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class WebhookEvent(_Strict):
    action: str
    scope: str


class WebhookRepo(_Strict):
    type: str
    name: str


class WebhookAuthor(_Strict):
    id: str


class WebhookComment(_Strict):
    id: str
    author: WebhookAuthor
    content: str
    hidden: bool = False


class WebhookDiscussion(_Strict):
    # The Hub numbers a repo's discussions from 1; a number past this is none of them (and past 2^63 the state
    # database could not even store it: that was a 503, redelivered for ever).
    num: int = Field(ge=1, le=MAX_DISCUSSION_NUM)
    isPullRequest: bool = False  # noqa: N815 - the Hub's field name


class WebhookPayload(_Strict):
    event: WebhookEvent
    repo: WebhookRepo
    discussion: WebhookDiscussion
    comment: WebhookComment | None = None


def _depth(text: bytes) -> int:
    """How deep the JSON's arrays and objects nest, counted without parsing (brackets inside strings
    are skipped), so a payload nested 50,000 deep never reaches the recursive parser."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_body(body: bytes) -> Any:
    """The JSON of a delivery. Raises WebhookError for anything that is not JSON or nests too deep."""
    if _depth(body) > MAX_JSON_DEPTH:
        raise WebhookError(f"payload nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:  # json.JSONDecodeError and bad UTF-8 are ValueErrors
        raise WebhookError(f"payload is not JSON: {error}") from None


def mention_from_payload(payload: Any, *, bot_user_id: str | None) -> MentionEvent | None:
    """The comment a Hub v3 payload carries, or None when the payload is not a new, visible, human comment.

    Raises:
        WebhookError: a payload that is not an object, or a discussion/comment payload whose fields do
            not have the Hub's shape (a wrong type, a discussion number below 1, an impossible repo id).
    """
    if not isinstance(payload, dict):
        raise WebhookError("payload is not a JSON object")
    try:
        event = WebhookEvent.model_validate(payload.get("event"))
    except ValidationError as error:
        raise WebhookError(f"payload field 'event' is malformed: {_first(error)}") from None
    if event.scope not in _SCOPES or event.action != "create":
        return None
    try:
        parsed = WebhookPayload.model_validate(payload)
    except ValidationError as error:
        raise WebhookError(f"payload is malformed: {_first(error)}") from None
    comment = parsed.comment
    if parsed.repo.type != "model" or comment is None:  # comment None: a discussion opened without one
        return None
    if not is_safe_repo_id(parsed.repo.name):
        raise WebhookError("payload field 'repo.name' is not a Hub repo id")
    if not all(_is_unicode(text) for text in (comment.id, comment.author.id, comment.content)):
        raise WebhookError("payload field 'comment' holds text that is not valid Unicode (an unpaired surrogate)")
    if (bot_user_id is not None and comment.author.id == bot_user_id) or comment.hidden:
        return None
    return MentionEvent(
        event_id=comment.id,
        repo_id=parsed.repo.name,
        discussion_num=parsed.discussion.num,
        comment_id=comment.id,
        author=None,
        text=comment.content,
        is_pull_request=parsed.discussion.isPullRequest,
        author_id=comment.author.id,
    )


def _is_unicode(text: str) -> bool:
    """Whether `text` can be stored (as UTF-8): JSON may escape half of a surrogate pair ("\\ud800"), which
    decodes to a Python string that the state database refuses, and the Hub would redeliver it forever."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _event_from(body: bytes, bot_user_id: str | None) -> MentionEvent | None:
    return mention_from_payload(parse_body(body), bot_user_id=bot_user_id)


def _first(error: ValidationError) -> str:
    """The first problem pydantic found, as "field.path: message" (never the offending value)."""
    problem = error.errors(include_input=False)[0]
    where = ".".join(str(part) for part in problem["loc"]) or "payload"
    return f"{where}: {problem['msg']}"


async def _capped_body(request: Request) -> bytes | None:
    """The request body, read chunk by chunk; None as soon as it passes MAX_BODY_BYTES (a chunked
    upload declares no length, so the cap has to hold while streaming)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int, word: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": word}, status_code=status, headers=headers)


def create_app(*, secret: str, handle: Callable[[MentionEvent], bool], bot_user_id: str | None) -> FastAPI:
    """The receiver: POST /webhook (the Hub's deliveries) and GET /health.

    Args:
        secret: the shared secret configured on the Hub webhook; compared in constant time.
        handle: called for each mention event, inside the request: records it durably and returns True, or
            False when that event id was recorded before. Raising (StoreError) answers 503 with Retry-After.
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
        try:
            body = await _capped_body(request)
        except ClientDisconnect:  # the sender went away (or uvicorn dropped a broken chunked body): nobody to answer
            logger.warning("webhook delivery from %s ended before its body did", request.client)
            return _answer(400, "malformed")
        if body is None:
            return _answer(413, "too large")
        try:
            # off the event loop: checking and parsing a 1 MiB body takes ~0.1 s of Python
            event = await run_in_threadpool(_event_from, body, bot_user_id)
        except WebhookError as error:
            logger.warning("malformed webhook payload: %s", error)
            return _answer(400, "malformed")
        if event is None:
            return _answer(200, "ignored")
        try:
            new = await run_in_threadpool(handle, event)
        except Exception as error:  # noqa: BLE001 - the Hub delivers it again; never a 500
            if isinstance(error, ClipAuditError):
                logger.error("could not record webhook event %s: %s", event.event_id, error)
            else:
                logger.exception("could not record webhook event %s", event.event_id)
            return _answer(503, "unavailable", {"Retry-After": str(RETRY_AFTER_SECONDS)})
        return _answer(202, "accepted") if new else _answer(200, "duplicate")

    return app
