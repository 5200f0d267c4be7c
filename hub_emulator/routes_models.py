"""Read-side /api routes: model listing and info, trees, refs, whoami, plus repo creation and YAML validation."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlencode

from . import api_errors
from .access import repo_id_from, require_user, visible_repo
from .derived import computed_tags, effective_library_name, effective_pipeline_tag, split_front_matter
from .http_types import Request, Response, Route, json_response, route
from .ids import now_iso
from .records import Repo
from .state import EmulatorState
from .validation import InvalidInput, validate_name_part
from .views import info_item, list_item, parse_expand, paths_info, refs_json, tree_entries, whoami_json

_SORT_KEYS = {
    "createdAt": lambda repo: repo.created_at,
    "lastModified": lambda repo: repo.head.date,
    "downloads": lambda repo: repo.downloads,
    "likes": lambda repo: repo.likes,
    "trendingScore": lambda repo: 0,
    "id": lambda repo: repo.repo_id.lower(),
}


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded))["offset"]
    except (ValueError, KeyError, TypeError):
        raise api_errors.bad_request("invalid cursor") from None
    if not isinstance(offset, int) or offset < 0:
        raise api_errors.bad_request("invalid cursor")
    return offset


def _matches(repo: Repo, request: Request) -> bool:
    head = repo.head
    if search := request.param("search"):
        if search.lower() not in repo.repo_id.lower():
            return False
    if author := request.param("author"):
        if author.lower() != repo.owner.lower():
            return False
    if pipeline_tag := request.param("pipeline_tag"):
        if effective_pipeline_tag(repo, head) != pipeline_tag:
            return False
    gated = request.param("gated")
    if gated is not None and bool(repo.gated) != (gated.lower() == "true"):
        return False
    wanted = request.params("filter")
    if wanted:
        tags = {tag.lower() for tag in computed_tags(repo, head)}
        library = (effective_library_name(repo, head) or "").lower()
        if not all(value.lower() in tags or value.lower() == library for value in wanted):
            return False
    return True


def list_models(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    sort = request.param("sort") or "createdAt"
    if sort not in _SORT_KEYS:
        raise api_errors.bad_request(f"Invalid sort: {sort}")
    try:
        limit = int(request.param("limit") or state.list_page_size)
    except ValueError:
        raise api_errors.bad_request("limit must be an integer") from None
    page_size = max(1, min(limit, state.list_page_size))
    offset = _decode_cursor(request.param("cursor"))
    expand = parse_expand(request.params("expand"))
    if expand and (request.flag("full") or request.flag("cardData") or request.flag("config")):
        raise api_errors.bad_request("expand cannot be combined with full, cardData or config")
    with state.lock:
        visible = [
            repo
            for repo in state.repos()
            if (not repo.private or repo.owner == request.user) and _matches(repo, request)
        ]
        visible.sort(key=lambda repo: (_SORT_KEYS[sort](repo), repo.repo_id.lower()), reverse=True)
        page = visible[offset : offset + page_size]
        items = [
            list_item(
                repo,
                expand=expand,
                full=request.flag("full"),
                card_data=request.flag("cardData"),
                config=request.flag("config"),
            )
            for repo in page
        ]
    headers: dict[str, str] = {}
    if offset + page_size < len(visible):
        query = [(key, value) for key, values in request.query.items() if key != "cursor" for value in values]
        query.append(("cursor", _encode_cursor(offset + page_size)))
        headers["Link"] = f'<{request.base_url}/api/models?{urlencode(query)}>; rel="next"'
    return json_response(items, headers=headers)


def model_info(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    expand = parse_expand(request.params("expand"))
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params))
        commit = state.resolve(repo, params.get("rev", "main"))
        return json_response(info_item(repo, commit, blobs=request.flag("blobs"), expand=expand))


def repo_tree(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params))
        commit = state.resolve(repo, params["rev"])
        entries = tree_entries(commit, params.get("path", ""), recursive=request.flag("recursive"))
    return json_response(entries)


def requested_paths(request: Request) -> list[str]:
    """The `paths` of a paths-info request (JSON or form-encoded body)."""
    content_type = request.headers.get("content-type", "")
    if "json" in content_type:
        paths = request.json_object().get("paths", [])
    else:
        paths = parse_qs(request.body.decode("utf-8", "replace")).get("paths", [])
    if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
        raise api_errors.bad_request("paths must be a list of strings")
    return paths


def repo_paths_info(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    paths = requested_paths(request)
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params))
        commit = state.resolve(repo, params["rev"])
        return json_response(paths_info(commit, paths))


def repo_refs(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params))
        return json_response(refs_json(repo, include_prs=request.flag("include_prs")))


def whoami(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    user = require_user(request)
    return json_response(whoami_json(user, created_at=state.started_at))


def validate_yaml(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    content = request.json_object().get("content", "")
    if not isinstance(content, str):
        raise api_errors.bad_request("content must be a string")
    if content.startswith("---") and split_front_matter(content)[0] is None:
        return json_response({"errors": [{"message": "Invalid YAML front matter"}], "warnings": []}, status=400)
    return json_response({"errors": [], "warnings": []})


def create_repo(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    user = require_user(request)
    payload = request.json_object()
    if payload.get("type", "model") != "model":
        raise api_errors.bad_request("The emulator only hosts model repos")
    owner = payload.get("organization") or user
    name = payload.get("name")
    try:
        validate_name_part(str(owner), what="organization")
        validate_name_part(str(name), what="repo name")
    except InvalidInput as exc:
        raise api_errors.bad_request(str(exc)) from None
    if owner != user:
        raise api_errors.forbidden(f"You cannot create repos in the namespace {owner}")
    repo_id = f"{owner}/{name}"
    private = payload.get("private") is True or payload.get("visibility") == "private"
    url = f"{request.base_url}/{repo_id}"
    if state.has_repo(repo_id):
        # create_repo(exist_ok=True) reads the url from this 409 body, as the Hub sends it.
        message = f"You already created this model repo: {repo_id}"
        return json_response({"error": message, "url": url}, status=409, headers={"X-Error-Message": message})
    state.create_repo(repo_id, private=private, author=user, created_at=now_iso())
    return json_response({"url": url, "name": repo_id, "id": repo_id})


ROUTES: list[Route] = [
    route("GET", "/api/models", list_models),
    route("GET", "/api/models/:owner/:name", model_info),
    route("GET", "/api/models/:owner/:name/revision/:rev", model_info),
    route("GET", "/api/models/:owner/:name/tree/:rev", repo_tree),
    route("GET", "/api/models/:owner/:name/tree/:rev/*path", repo_tree),
    route("POST", "/api/models/:owner/:name/paths-info/:rev", repo_paths_info),
    route("GET", "/api/models/:owner/:name/refs", repo_refs),
    route("GET", "/api/whoami-v2", whoami),
    route("POST", "/api/validate-yaml", validate_yaml),
    route("POST", "/api/repos/create", create_repo),
]
