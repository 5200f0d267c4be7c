"""Turning the Hub client's HTTP errors into the bot's own errors, with a message fit for logs."""

from __future__ import annotations

import re

from huggingface_hub.errors import HfHubHTTPError

from bot.errors import HubError, RateLimitedError

_RATE_LIMIT_T = re.compile(r"\bt=(\d+(?:\.\d+)?)")
DEFAULT_RETRY_AFTER_S = 60.0


def status_of(error: HfHubHTTPError) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def is_forbidden(error: HfHubHTTPError) -> bool:
    """403: discussions or pull requests are disabled on the repo, or the token may not write there."""
    return status_of(error) == 403


def _retry_after(error: HfHubHTTPError) -> float:
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    raw = headers.get("Retry-After")
    if raw is not None:
        try:
            return max(float(raw), 0.0)
        except ValueError:
            pass
    match = _RATE_LIMIT_T.search(headers.get("RateLimit", ""))
    return float(match.group(1)) if match else DEFAULT_RETRY_AFTER_S


def hub_failure(error: HfHubHTTPError, *, action: str) -> HubError:
    """The HubError to raise for a failed call; RateLimitedError (with retry_after) for 429."""
    status = status_of(error)
    detail = getattr(error, "server_message", None) or type(error).__name__
    message = f"{action} failed (HTTP {status}): {detail}"
    if status == 429:
        return RateLimitedError(message, retry_after=_retry_after(error))
    return HubError(message)
