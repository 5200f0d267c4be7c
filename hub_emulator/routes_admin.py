"""Admin routes under /_emulator/ for tests and demos: seed repos, push revisions, act as any user, inject faults.

These bypass Hub permissions on purpose. When the server has an admin token, every call must carry it in
X-Emulator-Admin-Token.
"""

from __future__ import annotations

from typing import Any

from . import api_errors
from .faults import Fault
from .http_types import Request, Response, Route, json_response, route
from .seed import RepoSeed, file_sources_from_json, seed_repo
from .state import EmulatorState
from .views import event_json


def _repo_id(params: dict[str, str]) -> str:
    return f"{params['owner']}/{params['name']}"


def _string(payload: dict[str, Any], name: str, *, default: str | None = None) -> str:
    value = payload.get(name, default)
    if not isinstance(value, str):
        raise api_errors.bad_request(f"{name} must be a string")
    return value


def health(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    return json_response({"ok": True, "repos": len(state.repos())})


def create_repo(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    payload = request.json_object()
    try:
        seed = RepoSeed.from_json(payload)
    except (KeyError, TypeError) as exc:
        raise api_errors.bad_request(f"invalid repo spec: {exc}") from None
    return json_response({"repo_id": seed.repo_id, "sha": seed_repo(state, seed)}, status=201)


def push_revision(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    payload = request.json_object()
    sha = state.push_revision(
        _repo_id(params),
        files=file_sources_from_json(payload.get("files", {})),
        deleted=list(payload.get("deleted", [])),
        message=_string(payload, "message", default="Upload files"),
        description=_string(payload, "description", default=""),
        author=payload.get("author"),
        date=payload.get("date"),
        card_data=payload.get("card_data"),
        tags=payload.get("tags"),
        pipeline_tag=payload.get("pipeline_tag"),
        library_name=payload.get("library_name"),
    )
    return json_response({"sha": sha})


def update_settings(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    payload = request.json_object()
    repo_id = _repo_id(params)
    state.update_settings(
        repo_id,
        private=payload.get("private"),
        gated=payload.get("gated"),
        discussions_disabled=payload.get("discussions_disabled"),
    )
    for user in payload.get("grant", []):
        state.grant_access(repo_id, _string({"user": user}, "user"))
    return json_response({"ok": True})


def create_discussion(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    payload = request.json_object()
    num = state.create_discussion(
        _repo_id(params),
        author=_string(payload, "author"),
        title=_string(payload, "title"),
        description=_string(payload, "description", default=""),
        pull_request=payload.get("pull_request") is True,
    )
    return json_response({"num": num}, status=201)


def _num(params: dict[str, str]) -> int:
    try:
        return int(params["num"])
    except ValueError:
        raise api_errors.bad_request("discussion number must be an integer") from None


def add_comment(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    payload = request.json_object()
    event = state.add_comment(
        _repo_id(params), _num(params), author=_string(payload, "author"), text=_string(payload, "text")
    )
    return json_response({"event": event_json(event)}, status=201)


def change_status(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    payload = request.json_object()
    event = state.change_status(
        _repo_id(params),
        _num(params),
        author=_string(payload, "author"),
        status=payload.get("status"),  # type: ignore[arg-type]
        comment=payload.get("comment"),
    )
    return json_response({"event": event_json(event)})


def add_token(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    payload = request.json_object()
    user = _string(payload, "user")
    state.add_token(_string(payload, "token"), user)
    return json_response({"user": user, "id": state.user_id(user)}, status=201)


def add_fault(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    payload = request.json_object()
    status, count = payload.get("status"), payload.get("count", 1)
    retry_after = payload.get("retry_after")
    if not isinstance(status, int) or not 400 <= status <= 599 or not isinstance(count, int) or count < 1:
        raise api_errors.bad_request("status must be a 4xx/5xx integer and count a positive integer")
    if retry_after is not None and not isinstance(retry_after, int):
        raise api_errors.bad_request("retry_after must be an integer number of seconds")
    fault = Fault(
        path_prefix=_string(payload, "path_prefix", default="/api/"),
        status=status,
        remaining=count,
        method=payload.get("method"),
        retry_after_s=retry_after,
        message=_string(payload, "message", default="Injected failure"),
    )
    state.faults.add(fault)
    return json_response({"ok": True}, status=201)


def clear_faults(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    state.faults.clear()
    return json_response({"ok": True})


def webhook_log(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    if state.webhooks is None:
        return json_response({"configured": False, "deliveries": []})
    if request.flag("flush"):
        state.webhooks.flush()
    return json_response({"configured": True, "deliveries": state.webhooks.log()})


ROUTES: list[Route] = [
    route("GET", "/_emulator/health", health),
    route("POST", "/_emulator/repos", create_repo),
    route("POST", "/_emulator/repos/:owner/:name/commit", push_revision),
    route("POST", "/_emulator/repos/:owner/:name/settings", update_settings),
    route("POST", "/_emulator/repos/:owner/:name/discussions", create_discussion),
    route("POST", "/_emulator/repos/:owner/:name/discussions/:num/comments", add_comment),
    route("POST", "/_emulator/repos/:owner/:name/discussions/:num/status", change_status),
    route("POST", "/_emulator/tokens", add_token),
    route("POST", "/_emulator/faults", add_fault),
    route("DELETE", "/_emulator/faults", clear_faults),
    route("GET", "/_emulator/webhook-log", webhook_log),
]
