"""Discussions and pull requests: list, details, create, comment, status change, merge."""

from __future__ import annotations

from typing import Any

from . import api_errors
from .access import check_can_change_status, repo_id_from, require_user, visible_repo
from .http_types import Request, Response, Route, json_response, route
from .records import Discussion
from .state import EmulatorState
from .views import discussion_details, discussion_summary, event_json

_TYPES = {"all", "discussion", "pull_request"}
_STATUSES = {"all", "open", "closed", "merged", "draft"}


def _num(params: dict[str, str]) -> int:
    try:
        num = int(params["num"])
    except ValueError:
        raise api_errors.bad_request("discussion number must be an integer") from None
    if num <= 0:
        raise api_errors.bad_request("discussion number must be positive")
    return num


def _wanted(discussion: Discussion, *, kind: str, status: str, author: str | None) -> bool:
    if kind == "discussion" and discussion.is_pull_request:
        return False
    if kind == "pull_request" and not discussion.is_pull_request:
        return False
    if status != "all" and discussion.status != status:
        return False
    return author is None or discussion.author == author


def list_discussions(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    kind = request.param("type") or "all"
    status = request.param("status") or "all"
    if kind not in _TYPES or status not in _STATUSES:
        raise api_errors.bad_request("invalid type or status filter")
    try:
        page = int(request.param("p") or 0)
    except ValueError:
        raise api_errors.bad_request("p must be an integer") from None
    author = request.param("author")
    size = state.discussion_page_size
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params))
        if repo.discussions_disabled:
            raise api_errors.discussions_disabled()
        matching = [d for d in reversed(repo.discussions) if _wanted(d, kind=kind, status=status, author=author)]
        start = max(page, 0) * size
        items = [discussion_summary(repo, d) for d in matching[start : start + size]]
    return json_response({"discussions": items, "count": len(matching), "start": start, "numClosedDiscussions": 0})


def discussion_details_route(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params))
        if repo.discussions_disabled:
            raise api_errors.discussions_disabled()
        discussion = state.discussion(repo, _num(params))
        diff = state.pr_diff(repo, discussion) if discussion.is_pull_request and request.flag("diff") else None
        return json_response(discussion_details(repo, discussion, diff=diff))


def _text_field(payload: dict[str, Any], name: str, *, required: bool) -> str:
    value = payload.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise api_errors.bad_request(f"{name} must be a string")
    return value


def create_discussion(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    user = require_user(request)
    payload = request.json_object()
    title = _text_field(payload, "title", required=True)
    description = _text_field(payload, "description", required=False)
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params))
        num = state.create_discussion(
            repo.repo_id,
            author=user,
            title=title,
            description=description,
            pull_request=payload.get("pullRequest") is True,
        )
    return json_response({"num": num, "url": f"{request.base_url}/{repo.repo_id}/discussions/{num}"})


def comment(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    user = require_user(request)
    text = _text_field(request.json_object(), "comment", required=True)
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params))
        event = state.add_comment(repo.repo_id, _num(params), author=user, text=text)
        return json_response({"newMessage": event_json(event)})


def change_status(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    user = require_user(request)
    payload = request.json_object()
    status = payload.get("status")
    note = _text_field(payload, "comment", required=False) or None
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params))
        if repo.discussions_disabled:
            raise api_errors.discussions_disabled()
        check_can_change_status(repo, state.discussion(repo, _num(params)), user)
        event = state.change_status(repo.repo_id, _num(params), author=user, status=status, comment=note)
        return json_response({"newStatus": event_json(event)})


def merge(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    user = require_user(request)
    note = _text_field(request.json_object() if request.body else {}, "comment", required=False) or None
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params))
        if user != repo.owner:
            raise api_errors.forbidden("Only the repo owner can merge pull requests")
        state.merge_pull_request(repo.repo_id, _num(params), author=user, comment=note)
        discussion = state.discussion(repo, _num(params))
        return json_response(discussion_details(repo, discussion, diff=None))


ROUTES: list[Route] = [
    route("GET", "/api/models/:owner/:name/discussions", list_discussions),
    route("POST", "/api/models/:owner/:name/discussions", create_discussion),
    route("GET", "/api/models/:owner/:name/discussions/:num", discussion_details_route),
    route("POST", "/api/models/:owner/:name/discussions/:num/comment", comment),
    route("POST", "/api/models/:owner/:name/discussions/:num/status", change_status),
    route("POST", "/api/models/:owner/:name/discussions/:num/merge", merge),
]
