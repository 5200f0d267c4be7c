"""The one boundary to the Hub: a typed client over huggingface_hub.HfApi that raises the bot's own errors.

Every reader and writer (watcher, fetch, planner, publisher, mentions, service) goes through `HubClient`;
nothing else in the bot imports huggingface_hub's API or error types. Each failed call becomes one exception
from bot/errors.py, chosen in `translate`:

- SkipRepo: the repo or revision is gone, private, disabled or gated (nothing to retry);
- RateLimitedError(retry_after): 429, or a 5xx that says when to come back (Retry-After / RateLimit);
- DiscussionsDisabledError: the owner turned discussions (and so pull requests) off;
- HubAuthError: 401, or a 403 for any other reason (the token lacks a scope or the repo is not ours);
- HubUnavailableError: 5xx or a network failure (worth retrying later);
- HubNotFoundError: 404 for something inside an existing repo (a file, a discussion);
- HubError: anything else, with the Hub's own message.

The client's own http_backoff retries 429/5xx only for downloads and pagination, so the rate-limit
translation here is where the worker's retry logic learns how long to wait. A connection that drops before
the answer is complete, or a call that times out, is a HubUnavailableError like any outage: retried by the
caller (the worker, the mention processor), which reads the Hub again before it writes, so a write whose
answer was lost is not made twice. Tokens never appear in messages, logs or repr().

huggingface_hub's shared HTTP client waits forever by default (timeout=None): a stalled Hub would hang the
worker. HubClient gives that client a timeout (Settings.hub_timeout_seconds); the client is shared by the
whole process, so the last HubClient built sets it (the bot's processes build theirs from one Settings).
"""

from __future__ import annotations

import functools
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download, set_client_factory
from huggingface_hub.community import DiscussionComment
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
from huggingface_hub.utils._http import default_client_factory  # the library's client: its hooks, its redirects

from bot.errors import (
    DiscussionsDisabledError,
    HubAuthError,
    HubError,
    HubNotFoundError,
    HubUnavailableError,
    RateLimitedError,
    SkipReason,
    SkipRepo,
)
from bot.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_RETRY_AFTER = 60.0  # a 429 that says nothing about when to come back
# How the Hub words a 403 for a repo whose owner turned discussions off (the emulator says the same).
_DISCUSSIONS_DISABLED = "discussions are disabled"


# -- what the bot reads from the Hub ---------------------------------------------------------------------


@dataclass(frozen=True)
class HubComment:
    id: str
    author: str
    content: str
    hidden: bool


@dataclass(frozen=True)
class HubThread:
    """A discussion or pull request; `comments` is filled only by `discussion_details`."""

    num: int
    title: str
    author: str
    status: str            # "open" | "closed" | "merged" | "draft"
    is_pull_request: bool
    url: str
    comments: tuple[HubComment, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status == "open"


@dataclass(frozen=True)
class PathSize:
    path: str
    size: int


# -- errors ----------------------------------------------------------------------------------------------


def retry_after_of(headers: Any) -> float | None:
    """Seconds to wait, from `RateLimit: "api";r=0;t=N` (preferred) or a numeric Retry-After; None if neither."""
    info = parse_ratelimit_headers(headers) if headers is not None else None
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


def translate(exc: HfHubHTTPError, *, action: str) -> HubError | SkipRepo:
    """The bot's exception for a failed Hub call. `action` says what was attempted ("list models", ...)."""
    response = exc.response
    status = response.status_code if response is not None else None
    headers = response.headers if response is not None else None
    server = _server_message(exc)
    detail = f": {server}" if server else ""

    if isinstance(exc, GatedRepoError):
        return SkipRepo(SkipReason.GATED, f"cannot {action} without approved access")
    if isinstance(exc, RevisionNotFoundError):
        return SkipRepo(SkipReason.REVISION_GONE,
                        f"cannot {action}, the revision no longer exists (force-pushed or deleted)")
    if isinstance(exc, (RepositoryNotFoundError, DisabledRepoError)):
        return SkipRepo(SkipReason.NOT_FOUND, f"cannot {action}, the repo is gone, private or disabled")
    if isinstance(exc, RemoteEntryNotFoundError):
        return HubNotFoundError(f"cannot {action}: file not found at that revision")
    retry_after = retry_after_of(headers)
    if status == 429 or (retry_after is not None and status is not None and status >= 500):
        wait = retry_after if retry_after is not None else DEFAULT_RETRY_AFTER
        return RateLimitedError(f"the Hub asked to slow down while trying to {action}; retry in {wait:.0f}s", wait)
    if status == 403 and _DISCUSSIONS_DISABLED in server.lower():
        return DiscussionsDisabledError(f"cannot {action}: discussions are disabled on this repo")
    if status == 401:
        return HubAuthError(f"cannot {action}: the Hub refused the token (401); check HF_TOKEN{detail}")
    if status == 403:
        return HubAuthError(f"cannot {action}: the token lacks permission (403){detail}")
    if status == 404:
        return HubNotFoundError(f"cannot {action}: not found (404){detail}")
    if status is not None and status >= 500:
        return HubUnavailableError(f"cannot {action}: the Hub is unavailable ({status}){detail}")
    return HubError(f"cannot {action}: the Hub answered {status}{detail}")


@contextmanager
def hub_errors(action: str) -> Iterator[None]:
    """Runs a block of Hub calls, turning client and network failures into the bot's errors."""
    try:
        yield
    except HfHubHTTPError as exc:
        raise translate(exc, action=action) from exc
    except httpx2.TransportError as exc:
        raise HubUnavailableError(f"cannot {action}: the Hub is unreachable ({type(exc).__name__})") from exc
    except LocalEntryNotFoundError as exc:  # hf_hub_download's way of saying the network failed
        raise HubUnavailableError(f"cannot {action}: the Hub is unreachable and the file is not cached") from exc


# -- the client ------------------------------------------------------------------------------------------

_timeout_lock = threading.Lock()
_timeout_in_use: float | None = None


_TIMEOUT_KINDS = ("connect", "read", "write", "pool")


def _client_with_timeout(seconds: float) -> httpx2.Client:
    client = default_client_factory()

    def bounded(request: httpx2.Request) -> None:
        # Several HfApi calls (model_info, listing pages) pass timeout=None explicitly, which overrides a client
        # default: each request's missing limits are filled in here, just before it is sent. Per read, not for
        # the whole call: a slow answer that keeps arriving is not cut off. Limits a call sets itself are kept.
        limits = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {kind: seconds if limits.get(kind) is None else limits[kind]
                                         for kind in _TIMEOUT_KINDS}  # fmt: skip

    client.event_hooks = {**client.event_hooks, "request": [*client.event_hooks["request"], bounded]}
    return client


def use_timeout(seconds: float) -> None:
    """Gives huggingface_hub's shared HTTP client (every HfApi call, hf_hub_download's metadata requests) a
    timeout of `seconds`; a no-op when that timeout is already in use (setting it closes the shared client)."""
    global _timeout_in_use
    with _timeout_lock:
        if _timeout_in_use != seconds:
            set_client_factory(functools.partial(_client_with_timeout, seconds))
            _timeout_in_use = seconds



def _thread(discussion: Any, comments: tuple[HubComment, ...] = ()) -> HubThread:
    return HubThread(num=discussion.num, title=discussion.title, author=discussion.author,
                     status=discussion.status, is_pull_request=discussion.is_pull_request, url=discussion.url,
                     comments=comments)  # fmt: skip


class HubClient:
    """HfApi with error translation and typed results. One per endpoint and token."""

    def __init__(self, *, endpoint: str, token: str | None,
                 timeout_s: float = Settings.hub_timeout_seconds) -> None:  # fmt: skip
        self.endpoint = endpoint.rstrip("/")
        # token=False: never fall back to a stored login the settings did not choose.
        self._api = HfApi(endpoint=self.endpoint, token=token if token else False)
        self._token = token
        use_timeout(timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> HubClient:
        return cls(endpoint=settings.endpoint, token=settings.token, timeout_s=settings.hub_timeout_seconds)

    @property
    def token(self) -> str | None:
        return self._token

    def __repr__(self) -> str:
        return f"HubClient(endpoint={self.endpoint!r}, token={'set' if self._token else 'none'})"

    def _call(self, action: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with hub_errors(action):
            return fn(*args, **kwargs)

    # -- models -------------------------------------------------------------------------------------------

    def list_models(self, **kwargs: Any) -> Iterator[Any]:
        """HfApi.list_models (ModelInfo items), translating errors raised while paging too."""
        with hub_errors("list models"):
            yield from self._api.list_models(**kwargs)

    def model_info(self, repo_id: str, *, revision: str | None = None, files_metadata: bool = False) -> Any:
        return self._call(f"read {repo_id}", self._api.model_info, repo_id, revision=revision,
                          files_metadata=files_metadata)  # fmt: skip

    def head_sha(self, repo_id: str, revision: str | None = None, *, repo_type: str = "model") -> str:
        """The commit `revision` (default: the main branch) points at now; `repo_type` "dataset" for a dataset."""
        info = self.dataset_info(repo_id, revision=revision) if repo_type == "dataset" \
            else self.model_info(repo_id, revision=revision)
        if not info.sha:
            raise HubError(f"the Hub gave no commit for {repo_id}@{revision or 'main'}")
        return info.sha

    def dataset_info(self, repo_id: str, *, revision: str | None = None) -> Any:
        return self._call(f"read the dataset {repo_id}", self._api.dataset_info, repo_id, revision=revision)

    def parse_safetensors_file_metadata(self, repo_id: str, filename: str, *, revision: str) -> Any:
        return self._call(f"read the header of {repo_id}/{filename}", self._api.parse_safetensors_file_metadata,
                          repo_id, filename, revision=revision)  # fmt: skip

    def path_sizes(self, repo_id: str, paths: Sequence[str], *, revision: str,
                   repo_type: str = "model") -> list[PathSize]:
        infos = self._call(f"read file sizes of {repo_id}@{revision[:8]}", self._api.get_paths_info, repo_id,
                           list(paths), revision=revision, repo_type=repo_type)  # fmt: skip
        return [PathSize(info.path, getattr(info, "size", 0) or 0) for info in infos]

    def download(self, repo_id: str, filename: str, *, revision: str, cache_dir: Path,
                 repo_type: str = "model") -> Path:
        """One file into the huggingface_hub cache under `cache_dir`; returns its local path."""
        with hub_errors(f"download {repo_id}@{revision[:8]}"):
            return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                                        endpoint=self.endpoint, token=self._token or False,
                                        repo_type=repo_type))  # fmt: skip

    def read_text(self, repo_id: str, filename: str, *, revision: str) -> str | None:
        """A small text file at `revision` (a README), or None when the repo has no such file."""
        with tempfile.TemporaryDirectory(prefix="clip-audit-read-") as cache:
            try:
                path = self.download(repo_id, filename, revision=revision, cache_dir=Path(cache))
            except HubNotFoundError:
                return None
            return path.read_text(encoding="utf-8", errors="replace")

    def whoami(self) -> dict[str, Any]:
        return self._call("identify the bot (whoami)", self._api.whoami)

    # -- discussions --------------------------------------------------------------------------------------

    def discussions(self, repo_id: str, *, author: str | None = None, kind: str = "all",
                    status: str = "all") -> list[HubThread]:
        """The repo's discussions and/or pull requests (kind "discussion" | "pull_request" | "all")."""
        with hub_errors(f"list the discussions of {repo_id}"):
            return [_thread(d) for d in self._api.get_repo_discussions(
                repo_id, author=author, discussion_type=kind, discussion_status=status)]

    def discussion_details(self, repo_id: str, num: int) -> HubThread:
        details = self._call(f"read {repo_id}#{num}", self._api.get_discussion_details, repo_id, num)
        comments = tuple(HubComment(id=e.id, author=e.author, content=e.content, hidden=e.hidden)
                         for e in details.events if isinstance(e, DiscussionComment))
        return _thread(details, comments)

    def create_discussion(self, repo_id: str, *, title: str, body: str) -> tuple[HubThread, str | None]:
        """Opens a discussion; returns it and the id of its opening post."""
        created = self._call(f"open a discussion on {repo_id}", self._api.create_discussion, repo_id,
                             title=title, description=body)  # fmt: skip
        opening = created.events[0].id if created.events else None
        return _thread(created), opening

    def comment(self, repo_id: str, num: int, body: str) -> HubComment:
        comment = self._call(f"comment in {repo_id}#{num}", self._api.comment_discussion, repo_id, num, body)
        return HubComment(id=comment.id, author=comment.author, content=comment.content, hidden=comment.hidden)

    def comment_url(self, repo_id: str, num: int, comment_id: str) -> str:
        return f"{self.endpoint}/{repo_id}/discussions/{num}#{comment_id}"

    def open_file_pr(self, repo_id: str, *, path: str, content: bytes, title: str, description: str,
                     parent: str) -> tuple[int, str]:
        """A pull request that writes one file on top of commit `parent`; returns (number, url)."""
        info = self._call(f"open a pull request on {repo_id}", self._api.create_commit, repo_id,
                          operations=[CommitOperationAdd(path_in_repo=path, path_or_fileobj=content)],
                          commit_message=title, commit_description=description, create_pr=True,
                          parent_commit=parent)  # fmt: skip
        if info.pr_num is None:
            raise HubError(f"the Hub opened no pull request on {repo_id}")
        return info.pr_num, info.pr_url or ""
