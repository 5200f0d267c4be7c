"""Uploads: POST /api/models/{id}/preupload/{rev} and POST /api/models/{id}/commit/{rev} (NDJSON)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from . import api_errors
from .access import check_can_push, repo_id_from, require_user, visible_repo
from .http_types import Request, Response, Route, json_response, route
from .state import EmulatorState, FileSource
from .validation import InvalidInput, ref_name_of, validate_repo_path


def preupload(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    require_user(request)
    files = request.json_object().get("files")
    if not isinstance(files, list):
        raise api_errors.bad_request("files must be a list")
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params))
        current = state.resolve(repo, params["rev"]).files
        answers = []
        for item in files:
            path = item.get("path") if isinstance(item, dict) else None
            if not isinstance(path, str):
                raise api_errors.bad_request("each file needs a path")
            existing = current.get(path)
            # Always "regular": the client then sends contents inline (base64) and never needs an LFS endpoint.
            answers.append({
                "path": path,
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": existing.git_sha1 if existing is not None and not existing.lfs else None,
            })  # fmt: skip
    return json_response({"files": answers})


def _parse_ndjson(body: bytes) -> list[dict[str, Any]]:
    lines = []
    for raw in body.splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            raise api_errors.bad_request("commit body must be NDJSON") from None
        if not isinstance(line, dict) or not isinstance(line.get("value"), dict):
            raise api_errors.bad_request("each NDJSON line needs a key and an object value")
        lines.append(line)
    return lines


def _path_of(value: dict[str, Any]) -> str:
    try:
        return validate_repo_path(value.get("path"))  # type: ignore[arg-type]
    except InvalidInput as exc:
        raise api_errors.bad_request(str(exc)) from None


def commit(state: EmulatorState, request: Request, params: dict[str, str]) -> Response:
    user = require_user(request)
    create_pr = request.flag("create_pr")
    header: dict[str, Any] | None = None
    additions: dict[str, FileSource] = {}
    deletions: list[str] = []
    deleted_folders: list[str] = []
    for line in _parse_ndjson(request.body):
        key, value = line.get("key"), line["value"]
        if key == "header":
            header = value
        elif key == "file":
            if value.get("encoding", "base64") != "base64":
                raise api_errors.bad_request("only base64 file contents are supported")
            try:
                additions[_path_of(value)] = base64.b64decode(value.get("content", ""), validate=True)
            except (binascii.Error, TypeError):
                raise api_errors.bad_request("file content is not valid base64") from None
        elif key == "lfsFile":
            oid = value.get("oid")
            try:
                blob = state.storage.blobs.path_of(oid) if isinstance(oid, str) else None
            except ValueError:
                blob = None
            if blob is None or not blob.exists():
                raise api_errors.bad_request(f"LFS object {oid} was never uploaded")
            additions[_path_of(value)] = blob
        elif key == "deletedFile":
            deletions.append(_path_of(value))
        elif key == "deletedFolder":
            deleted_folders.append(_path_of(value))
        else:
            raise api_errors.bad_request(f"unsupported commit operation: {key!r}")
    if header is None or not isinstance(header.get("summary"), str) or not header["summary"].strip():
        raise api_errors.bad_request("the commit needs a header line with a summary")
    revision = params["rev"]
    with state.lock:
        repo = visible_repo(state, request, repo_id_from(params))
        if not create_pr:
            ref = ref_name_of(revision)
            if ref is not None and ref in repo.refs:
                check_can_push(repo, user, ref)
    # Outside the lock: staging a large upload must not stall other requests.
    result = state.commit(
        repo.repo_id,
        revision=revision,
        additions=additions,
        deletions=deletions,
        deleted_folders=deleted_folders,
        summary=header["summary"],
        description=header.get("description") or "",
        author=user,
        create_pr=create_pr,
        parent_commit=header.get("parentCommit"),
    )
    body: dict[str, Any] = {
        "success": True,
        "commitOid": result.sha,
        "commitUrl": f"{request.base_url}/{repo.repo_id}/commit/{result.sha}",
    }
    if result.pr_num is not None:
        body["pullRequestUrl"] = f"{request.base_url}/{repo.repo_id}/discussions/{result.pr_num}"
    return json_response(body)


ROUTES: list[Route] = [
    route("POST", "/api/models/:owner/:name/preupload/:rev", preupload),
    route("POST", "/api/models/:owner/:name/commit/:rev", commit, uploads=True),
]
