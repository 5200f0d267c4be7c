"""From a parsed Request to a Response: admin gate, authentication, routing, error mapping.

Injected faults are the server's business (server.py): some of them act on the connection, not the answer.
"""

from __future__ import annotations

import hmac
import logging

from . import (
    api_errors,
    routes_admin,
    routes_commits,
    routes_datasets,
    routes_discussions,
    routes_files,
    routes_models,
)
from .api_errors import HubApiError
from .http_types import Request, Response, Route, error_response
from .state import EmulatorState
from .validation import InvalidInput

logger = logging.getLogger(__name__)

HUB_ROUTES: list[Route] = [
    *routes_datasets.ROUTES,  # first: /datasets/o/n/resolve/... must not be read as a model repo "datasets/o"
    *routes_models.ROUTES,
    *routes_discussions.ROUTES,
    *routes_commits.ROUTES,
    *routes_files.ROUTES,
]
ADMIN_ROUTES: list[Route] = routes_admin.ROUTES
ADMIN_TOKEN_HEADER = "x-emulator-admin-token"


def bearer_token(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _route(routes: list[Route], state: EmulatorState, request: Request) -> Response:
    allowed: list[str] = []
    for candidate in routes:
        params = candidate.match(request.segments)
        if params is None:
            continue
        if request.method in candidate.methods:
            return candidate.handler(state, request, params)
        allowed.extend(candidate.methods)
    if allowed:
        raise HubApiError(405, "Method not allowed", headers={"Allow": ", ".join(sorted(set(allowed)))})
    raise api_errors.not_found(f"Sorry, we can't find the page you are looking for: {request.raw_path}")


def is_admin_path(segments: list[str]) -> bool:
    return segments[:1] == ["_emulator"]


def check_admin(headers: dict[str, str], admin_token: str | None) -> None:
    """Raises 403 unless the request carries the admin token (lower-case header names). No token configured
    refuses everyone: the admin routes bypass every permission, so they are never open."""
    supplied = headers.get(ADMIN_TOKEN_HEADER, "")
    if admin_token is None or not hmac.compare_digest(supplied.encode(), admin_token.encode()):
        raise api_errors.forbidden("admin token missing or wrong")


def accepts_upload(method: str, segments: list[str]) -> bool:
    """Whether the route this request goes to takes file contents in its body (the larger body cap)."""
    routes = ADMIN_ROUTES if is_admin_path(segments) else HUB_ROUTES
    return any(r.uploads and method in r.methods and r.match(segments) is not None for r in routes)


def dispatch(state: EmulatorState, request: Request, *, admin_token: str | None) -> Response:
    try:
        if is_admin_path(request.segments):
            check_admin(request.headers, admin_token)
            return _route(ADMIN_ROUTES, state, request)
        request.token = bearer_token(request.headers)
        if request.token is not None:
            request.user = state.user_for_token(request.token)
            if request.user is None:
                raise api_errors.invalid_credentials()
        return _route(HUB_ROUTES, state, request)
    except HubApiError as error:
        return error_response(error)
    except InvalidInput as error:
        return error_response(api_errors.bad_request(str(error)))
    except Exception:
        logger.exception("emulator failed on %s %s", request.method, request.raw_path)
        return error_response(HubApiError(500, "Internal error in the hub emulator"))
