"""JSON shapes the huggingface_hub client parses: model info, listing items, discussions, events, trees, refs."""

from __future__ import annotations

import hashlib
import html
from typing import Any

from . import api_errors
from .derived import computed_tags, effective_library_name, effective_pipeline_tag
from .ids import object_id_for
from .records import Commit, Discussion, Event, FileEntry, Repo

# Every property the client may request with expand= (huggingface_hub.hf_api.ExpandModelProperty_T).
EXPANDABLE = frozenset(
    "author baseModels cardData childrenModelCount config createdAt disabled downloads downloadsAllTime "
    "evalResults gated gguf inference inferenceProviderMapping lastModified library_name likes mask_token "
    "model-index pipeline_tag private resourceGroup safetensors sha siblings spaces tags transformersInfo "
    "trendingScore usedStorage widgetData".split()
)
# What /api/models returns per item when neither expand nor full is given (as the live Hub does).
LIST_DEFAULT = ("_id", "id", "likes", "trendingScore", "private", "downloads", "tags", "pipeline_tag",
                "library_name", "createdAt", "modelId")  # fmt: skip
LIST_FULL_EXTRA = ("author", "sha", "lastModified", "gated", "disabled", "siblings", "spaces", "usedStorage")


def user_block(name: str) -> dict[str, Any]:
    return {"_id": object_id_for(name), "name": name, "fullname": name, "type": "user", "avatarUrl": "",
            "isPro": False, "isHf": False}  # fmt: skip


def sibling(path: str, entry: FileEntry, *, blobs: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"rfilename": path}
    if blobs:
        item["size"] = entry.size
        item["blobId"] = entry.git_sha1
        if entry.lfs:
            item["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return item


def _repo_fields(repo: Repo, commit: Commit, *, blobs: bool) -> dict[str, Any]:
    """The fields every repo type's info route shares."""
    return {
        "_id": repo.object_id,
        "id": repo.repo_id,
        "author": repo.owner,
        "sha": commit.sha,
        "lastModified": commit.date,
        "createdAt": repo.created_at,
        "private": repo.private,
        "gated": repo.gated,
        "disabled": False,
        "downloads": repo.downloads,
        "likes": repo.likes,
        "siblings": [sibling(path, entry, blobs=blobs) for path, entry in sorted(commit.files.items())],
        "usedStorage": sum(entry.size for entry in commit.files.values()),
    }


def model_fields(repo: Repo, commit: Commit, *, blobs: bool = False) -> dict[str, Any]:
    fields: dict[str, Any] = {
        **_repo_fields(repo, commit, blobs=blobs),
        "modelId": repo.repo_id,
        "downloadsAllTime": repo.downloads,
        "trendingScore": 0,
        "tags": computed_tags(repo, commit),
        "library_name": effective_library_name(repo, commit),
        "pipeline_tag": effective_pipeline_tag(repo, commit),
        "cardData": commit.card_data,
        "config": commit.config,
        "safetensors": commit.safetensors,
        "spaces": [],
    }
    return {key: value for key, value in fields.items() if value is not None}


def dataset_fields(repo: Repo, commit: Commit, *, blobs: bool = False) -> dict[str, Any]:
    """What /api/datasets/{id} returns: the fields a dataset shares with a model (no library, task or config)."""
    return {**_repo_fields(repo, commit, blobs=blobs), "tags": list(repo.tags)}


def parse_expand(values: list[str]) -> list[str]:
    unknown = [value for value in values if value not in EXPANDABLE]
    if unknown:
        raise api_errors.bad_request(f"Invalid expand value(s): {', '.join(unknown)}")
    return values


def _select(fields: dict[str, Any], names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return {name: fields[name] for name in names if name in fields}


def list_item(
    repo: Repo, *, expand: list[str], full: bool, card_data: bool, config: bool
) -> dict[str, Any]:
    fields = model_fields(repo, repo.head)
    if expand:
        return _select(fields, ["_id", "id", *expand])
    names = list(LIST_DEFAULT)
    if full:
        names.extend(LIST_FULL_EXTRA)
    if card_data:
        names.append("cardData")
    if config:
        names.append("config")
    return _select(fields, names)


def info_item(repo: Repo, commit: Commit, *, blobs: bool, expand: list[str]) -> dict[str, Any]:
    fields = model_fields(repo, commit, blobs=blobs)
    return _select(fields, ["_id", "id", *expand]) if expand else fields


def event_json(event: Event) -> dict[str, Any]:
    data: dict[str, Any] = dict(event.data)
    if event.type == "comment":
        raw = data.pop("raw", "")
        latest = {"raw": raw, "html": f"<p>{html.escape(raw)}</p>", "updatedAt": event.created_at,
                  "author": user_block(event.author)}  # fmt: skip
        data.update(latest=latest, history=[latest], numEdits=0, editors=[event.author], editorAvatarUrls=[],
                    reactions=[])  # fmt: skip
    return {"id": event.id, "type": event.type, "createdAt": event.created_at, "author": user_block(event.author),
            "data": data}  # fmt: skip


def discussion_summary(repo: Repo, discussion: Discussion) -> dict[str, Any]:
    return {
        "id": discussion.id,
        "num": discussion.num,
        "title": discussion.title,
        "status": discussion.status,
        "createdAt": discussion.created_at,
        "isPullRequest": discussion.is_pull_request,
        "author": user_block(discussion.author),
        "repo": {"name": repo.repo_id, "type": "model"},
        "numComments": sum(1 for event in discussion.events if event.type == "comment"),
        "pinned": False,
        "topReactions": [],
    }


def discussion_details(repo: Repo, discussion: Discussion, *, diff: str | None) -> dict[str, Any]:
    details = discussion_summary(repo, discussion)
    details["events"] = [event_json(event) for event in discussion.events]
    details["locked"] = False
    if discussion.is_pull_request:
        changes: dict[str, Any] = {"base": "refs/heads/main"}
        if discussion.merge_commit:
            changes["mergeCommitId"] = discussion.merge_commit
        details["changes"] = changes
        details["filesWithConflicts"] = []
        if diff is not None:
            details["diff"] = diff
    return details


def _tree_id(names: list[str]) -> str:
    return hashlib.sha1("\n".join(names).encode(), usedforsecurity=False).hexdigest()


def file_entry_json(path: str, entry: FileEntry) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "file", "oid": entry.git_sha1, "size": entry.size, "path": path}
    if entry.lfs:
        item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return item


def directory_json(commit: Commit, path: str) -> dict[str, Any]:
    inside = sorted(p for p in commit.files if p.startswith(path + "/"))
    return {"type": "directory", "oid": _tree_id(inside), "size": 0, "path": path}


def directories_of(commit: Commit) -> set[str]:
    folders: set[str] = set()
    for path in commit.files:
        parts = path.split("/")[:-1]
        folders.update("/".join(parts[: depth + 1]) for depth in range(len(parts)))
    return folders


def tree_entries(commit: Commit, folder: str, *, recursive: bool) -> list[dict[str, Any]]:
    """Entries under `folder` ("" for the root); EntryNotFound when the folder does not exist."""
    folder = folder.strip("/")
    folders = directories_of(commit)
    if folder and folder not in folders:
        raise api_errors.entry_not_found(folder)
    prefix = f"{folder}/" if folder else ""

    def wanted(path: str) -> bool:
        return path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])

    entries = [directory_json(commit, path) for path in sorted(folders) if wanted(path)]
    entries += [file_entry_json(path, entry) for path, entry in sorted(commit.files.items()) if wanted(path)]
    return entries


def paths_info(commit: Commit, paths: list[str]) -> list[dict[str, Any]]:
    folders = directories_of(commit)
    found: list[dict[str, Any]] = []
    for path in paths:
        path = path.strip("/")
        if path in commit.files:
            found.append(file_entry_json(path, commit.files[path]))
        elif path in folders:
            found.append(directory_json(commit, path))
    return found


def refs_json(repo: Repo, *, include_prs: bool) -> dict[str, Any]:
    branches = [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.refs["main"]}]
    prs = [
        {"name": ref, "ref": ref, "targetCommit": sha}
        for ref, sha in sorted(repo.refs.items(), key=lambda item: item[0])
        if ref.startswith("refs/pr/")
    ]
    result: dict[str, Any] = {"branches": branches, "converts": [], "tags": []}
    if include_prs:
        result["pullRequests"] = prs
    return result


def whoami_json(user: str, *, created_at: str) -> dict[str, Any]:
    return {
        "type": "user",
        "id": object_id_for(user),
        "name": user,
        "fullname": user,
        "email": f"{user}@users.emulator.invalid",
        "emailVerified": True,
        "canPay": False,
        "isPro": False,
        "periodEnd": None,
        "avatarUrl": "",
        "orgs": [],
        "auth": {
            "type": "access_token",
            "accessToken": {"displayName": "hub-emulator", "role": "write", "createdAt": created_at},
        },
    }
