"""A thin wrapper around huggingface_hub.HfApi that raises the bot's errors instead of HfHubHTTPError.

The client's own http_backoff retries 429/5xx only for downloads and pagination; every other call raises
at once, so the translation here is where rate limits become RateLimitedError(retry_after) for the worker's
retry logic. Tokens never appear in messages, logs or repr().
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx2
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    DisabledRepoError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import parse_ratelimit_headers

from bot.errors import HubError, RateLimitedError, SkipRepo
from bot.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_RETRY_AFTER = 60.0  # a 429 that says nothing about when to come back


class DiscussionsDisabledError(HubError):
    """The repo owner turned discussions (and so pull requests) off: the bot cannot post there."""


def retry_after_of(headers: Any) -> float | None:
    """Seconds to wait, from `RateLimit: "api";r=0;t=N` (preferred) or a numeric Retry-After."""
    info = parse_ratelimit_headers(headers)
    if info is not None and info.remaining == 0:
        return float(info.reset_in_seconds)
    value = headers.get("Retry-After") if headers is not None else None
    if value is not None:
        try:
            return max(0.0, float(value.strip()))
        except ValueError:
            return None  # an HTTP-date: rare on the Hub; the caller falls back to its default
    return None


def _server_message(exc: HfHubHTTPError) -> str:
    message = (exc.server_message or "").strip()
    return message.splitlines()[0] if message else ""


def translate(exc: HfHubHTTPError, *, action: str) -> Exception:
    """The bot's exception for a failed Hub call. `action` says what was attempted ("list models", ...)."""
    response = exc.response
    status = response.status_code if response is not None else None
    headers = response.headers if response is not None else {}
    server = _server_message(exc)
    detail = f": {server}" if server else ""

    if isinstance(exc, GatedRepoError):
        return SkipRepo(f"gated: cannot {action} without approved access")
    if isinstance(exc, RevisionNotFoundError):
        return SkipRepo(f"revision-gone: cannot {action}, the revision no longer exists (force-pushed or deleted)")
    if isinstance(exc, (RepositoryNotFoundError, DisabledRepoError)):
        return SkipRepo(f"not-found: cannot {action}, the repo is gone, private or disabled")
    if isinstance(exc, RemoteEntryNotFoundError):
        return HubError(f"cannot {action}: file not found at that revision")
    retry_after = retry_after_of(headers)
    if status == 429 or (retry_after is not None and status is not None and status >= 500):
        wait = retry_after if retry_after is not None else DEFAULT_RETRY_AFTER
        return RateLimitedError(f"the Hub asked to slow down while trying to {action}; retry in {wait:.0f}s", wait)
    if status == 403 and "discussions are disabled" in server.lower():
        return DiscussionsDisabledError(f"cannot {action}: discussions are disabled on this repo")
    if status == 401:
        return HubError(f"cannot {action}: the Hub refused the token (401); check HF_TOKEN{detail}")
    if status == 403:
        return HubError(f"cannot {action}: the token lacks permission (403){detail}")
    if status is not None and status >= 500:
        return HubError(f"cannot {action}: the Hub is unavailable ({status}){detail}")
    return HubError(f"cannot {action}: the Hub answered {status}{detail}")


@contextmanager
def hub_errors(action: str) -> Iterator[None]:
    """Runs a block of Hub calls, turning client and network failures into the bot's errors."""
    try:
        yield
    except HfHubHTTPError as exc:
        raise translate(exc, action=action) from exc
    except httpx2.TransportError as exc:
        raise HubError(f"cannot {action}: the Hub is unreachable ({type(exc).__name__})") from exc
    except LocalEntryNotFoundError as exc:  # hf_hub_download's way of saying the network failed
        raise HubError(f"cannot {action}: the Hub is unreachable and the file is not cached") from exc


class HubClient:
    """HfApi with error translation. Use `.api` for calls not wrapped here (inside `hub_errors(...)`)."""

    def __init__(self, *, endpoint: str, token: str | None, api: HfApi | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        # token=False: never fall back to a stored login the settings did not choose.
        self.api = api if api is not None else HfApi(endpoint=self.endpoint, token=token if token else False)
        self._token = token

    @classmethod
    def from_settings(cls, settings: Settings) -> HubClient:
        return cls(endpoint=settings.endpoint, token=settings.token)

    @property
    def token(self) -> str | None:
        return self._token

    def __repr__(self) -> str:
        return f"HubClient(endpoint={self.endpoint!r}, token={'set' if self._token else 'none'})"

    def call(self, action: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs) with errors translated; `action` describes it for messages."""
        with hub_errors(action):
            return fn(*args, **kwargs)

    def list_models(self, **kwargs: Any) -> Iterator[Any]:
        """HfApi.list_models, translating errors raised while paging too."""
        with hub_errors("list models"):
            yield from self.api.list_models(**kwargs)

    def model_info(self, repo_id: str, *, revision: str | None = None, files_metadata: bool = False) -> Any:
        return self.call(
            f"read {repo_id}", self.api.model_info, repo_id, revision=revision, files_metadata=files_metadata
        )

    def parse_safetensors_file_metadata(self, repo_id: str, filename: str, *, revision: str) -> Any:
        return self.call(
            f"read the header of {repo_id}/{filename}",
            self.api.parse_safetensors_file_metadata,
            repo_id,
            filename,
            revision=revision,
        )

    def whoami(self) -> dict[str, Any]:
        return self.call("identify the bot (whoami)", self.api.whoami)


def as_client(api: HubClient | HfApi | str, *, token: str | None = None) -> HubClient:
    """A HubClient from a HubClient, an HfApi (keeping its token unless `token` is given) or an endpoint URL."""
    if isinstance(api, HubClient):
        return api
    if isinstance(api, HfApi):
        own = api.token if isinstance(api.token, str) else None
        return HubClient(endpoint=api.endpoint, token=token or own, api=api)
    return HubClient(endpoint=api, token=token)
