"""Admin routes under /_emulator/ for tests and demos: seed repos, push revisions, act as any user, inject faults.

These bypass Hub permissions on purpose, so every call must carry the server's admin token in
X-Emulator-Admin-Token (the server always has one: EmulatorConfig.admin_token, or a generated one written to
<data_dir>/admin-token). Faults: POST /_emulator/faults takes the spec faults.fault_from_spec reads, GET lists
them with how often each fired, DELETE disarms them all.
"""

from __future__ import annotations

from typing import Any

from . import api_errors
from .faults import fault_from_spec
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
    try:
        fault = fault_from_spec(request.json_object())
    except ValueError as exc:
        raise api_errors.bad_request(f"invalid fault: {exc}") from None
    return json_response({"ok": True, "id": state.faults.add(fault)}, status=201)


def list_faults(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    return json_response(state.faults.listing())


def clear_faults(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    state.faults.clear()
    return json_response({"ok": True})


def webhook_log(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    if state.webhooks is None:
        return json_response({"configured": False, "deliveries": []})
    if request.flag("flush"):
        state.webhooks.flush()
    return json_response({"configured": True, "deliveries": state.webhooks.log()})


def webhook_deliveries(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    """Each delivery (event) with its attempts and outcome; ?flush=1 first waits for pending ones (bounded)."""
    if state.webhooks is None:
        return json_response({"configured": False, "deliveries": [], "counts": {}})
    settled = state.webhooks.flush() if request.flag("flush") else None
    deliveries = state.webhooks.deliveries()
    counts = {outcome: 0 for outcome in ("delivered", "pending", "failed")}
    for delivery in deliveries:
        counts[delivery["outcome"]] += 1
    return json_response({"configured": True, "settled": settled, "counts": counts, "deliveries": deliveries})


ROUTES: list[Route] = [
    route("GET", "/_emulator/health", health),
    route("POST", "/_emulator/repos", create_repo, uploads=True),
    route("POST", "/_emulator/repos/:owner/:name/commit", push_revision, uploads=True),
    route("POST", "/_emulator/repos/:owner/:name/settings", update_settings),
    route("POST", "/_emulator/repos/:owner/:name/discussions", create_discussion),
    route("POST", "/_emulator/repos/:owner/:name/discussions/:num/comments", add_comment),
    route("POST", "/_emulator/repos/:owner/:name/discussions/:num/status", change_status),
    route("POST", "/_emulator/tokens", add_token),
    route("POST", "/_emulator/faults", add_fault),
    route("GET", "/_emulator/faults", list_faults),
    route("DELETE", "/_emulator/faults", clear_faults),
    route("GET", "/_emulator/webhook-log", webhook_log),
    route("GET", "/_emulator/webhook-deliveries", webhook_deliveries),
]
