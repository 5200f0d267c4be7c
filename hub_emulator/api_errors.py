"""HTTP-level failures, carrying the status and X-Error-Code the real Hub sends so the client raises the right class."""

from __future__ import annotations


class HubApiError(Exception):
    def __init__(
        self, status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def repo_not_found(repo_id: str, *, authenticated: bool = True) -> HubApiError:
    # The Hub answers 401 to anonymous callers so as not to reveal whether a private repo exists.
    return HubApiError(401 if not authenticated else 404, "Repository not found", code="RepoNotFound")


def revision_not_found(revision: str) -> HubApiError:
    return HubApiError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")


def entry_not_found(path: str) -> HubApiError:
    return HubApiError(404, f"Entry not found: {path}", code="EntryNotFound")


def gated_repo(repo_id: str, *, authenticated: bool) -> HubApiError:
    message = f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it."
    return HubApiError(403 if authenticated else 401, message, code="GatedRepo")


def bad_request(message: str) -> HubApiError:
    return HubApiError(400, message)


def unauthorized(message: str = "You must be authenticated to do this") -> HubApiError:
    return HubApiError(401, message)


def invalid_credentials() -> HubApiError:
    # The client recognises this exact message and does not mistake it for a missing repo.
    return HubApiError(401, "Invalid credentials in Authorization header")


def forbidden(message: str) -> HubApiError:
    return HubApiError(403, message)


def discussions_disabled() -> HubApiError:
    return HubApiError(403, "Discussions are disabled for this repo")


def conflict(message: str) -> HubApiError:
    return HubApiError(409, message)


def not_found(message: str = "Not found") -> HubApiError:
    return HubApiError(404, message)
