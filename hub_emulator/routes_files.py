"""File downloads: HEAD/GET /{owner}/{name}/resolve/{rev}/{path}, with the headers hf_hub_download relies on."""

from __future__ import annotations

import mimetypes

from . import api_errors
from .access import check_file_access, repo_id_from, visible_repo
from .http_types import FileBody, Request, Response, Route, route
from .state import EmulatorState
from .validation import RangeNotSatisfiable, parse_range_header


def resolve_file(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    return serve_file(state, request, params)


def serve_file(state: EmulatorState, request: Request, params: dict[str, str], *, dataset: bool = False) -> Response:
    """A model repo's file (with `dataset`, a dataset repo's) at a revision, whole or a byte range."""
    path = params["path"]
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params), dataset=dataset)
        commit = state.resolve(repo, params["rev"])
        entry = commit.files.get(path)
        if entry is None:
            error = api_errors.entry_not_found(path)
            # The client caches "this file does not exist at this commit" using this header.
            error.headers["X-Repo-Commit"] = commit.sha
            raise error
        check_file_access(repo, request, path)
        if request.method == "GET" and "range" not in request.headers:
            repo.downloads += 1
    headers = {
        "X-Repo-Commit": commit.sha,
        "ETag": f'"{entry.etag}"',
        "Accept-Ranges": "bytes",
        "Content-Type": mimetypes.guess_type(path)[0] or "application/octet-stream",
    }
    if entry.lfs:
        headers["X-Linked-Etag"] = f'"{entry.sha256}"'
        headers["X-Linked-Size"] = str(entry.size)
    try:
        byte_range = parse_range_header(request.headers.get("range"), entry.size)
    except RangeNotSatisfiable:
        headers["Content-Range"] = f"bytes */{entry.size}"
        raise api_errors.HubApiError(416, "Requested range not satisfiable", headers=headers) from None
    blob = state.blob_path(entry)
    if byte_range is None:
        headers["Content-Length"] = str(entry.size)
        return Response(200, headers, FileBody(blob, 0, entry.size))
    headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{entry.size}"
    headers["Content-Length"] = str(byte_range.length)
    return Response(206, headers, FileBody(blob, byte_range.start, byte_range.length))


ROUTES: list[Route] = [
    route("GET HEAD", "/:owner/:name/resolve/:rev/*path", resolve_file),
]
