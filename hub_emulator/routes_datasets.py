"""Dataset repos, read-only: info, paths-info and file downloads (/api/datasets/..., /datasets/.../resolve/...).

Enough for a client that fetches a dataset's files pinned to a commit; datasets are created through the
Python API (EmulatorState.create_dataset), never over HTTP.
"""

from __future__ import annotations

from .access import repo_id_from, visible_repo
from .http_types import Request, Response, Route, json_response, route
from .routes_files import serve_file
from .routes_models import requested_paths
from .state import EmulatorState
from .views import dataset_fields, paths_info


def dataset_info(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params), dataset=True)
        commit = state.resolve(repo, params.get("rev", "main"))
        return json_response(dataset_fields(repo, commit, blobs=request.flag("blobs")))


def dataset_paths_info(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    paths = requested_paths(request)
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params), dataset=True)
        commit = state.resolve(repo, params["rev"])
        return json_response(paths_info(commit, paths))


def resolve_dataset_file(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    return serve_file(state, request, params, dataset=True)


ROUTES: list[Route] = [
    route("GET", "/api/datasets/:owner/:name", dataset_info),
    route("GET", "/api/datasets/:owner/:name/revision/:rev", dataset_info),
    route("POST", "/api/datasets/:owner/:name/paths-info/:rev", dataset_paths_info),
    route("GET HEAD", "/datasets/:owner/:name/resolve/:rev/*path", resolve_dataset_file),
]
