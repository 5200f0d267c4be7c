"""Seeding the emulator: typed repo specs, a JSON seed-file loader, and file-content decoding for the admin API.

Python callers can also use EmulatorState directly (create_repo / push_revision / create_discussion /
add_comment); this module turns declarative specs (a dict, a JSON file, an admin request) into those calls.

Seed file shape:
    {"tokens": {"<token>": "<user>"},
     "repos": [{"repo_id": "acme/clip", "files": {"config.json": {"text": "{}"},
                                                  "model.safetensors": {"path": "weights/model.safetensors"},
                                                  "notes.bin": {"base64": "AAE="}},
                "tags": ["clip"], "pipeline_tag": "zero-shot-image-classification", "library_name": "open_clip",
                "card_data": {"base_model": "openai/clip-vit-base-patch32"}, "created_at": "2026-01-02T12:00:00.000Z",
                "gated": false, "private": false, "discussions_disabled": false,
                "revisions": [{"files": {...}, "deleted": [...], "message": "...", "date": "..."}],
                "discussions": [{"author": "alice", "title": "...", "description": "...",
                                 "comments": [{"author": "bob", "text": "..."}]}]}]}
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .api_errors import bad_request
from .state import EmulatorState, FileSource, GatedSetting


def file_sources_from_json(spec: Mapping[str, Any], *, base_dir: Path | None = None) -> dict[str, FileSource]:
    """{path: {"text": str} | {"base64": str} | {"path": str}} -> contents; "path" only when base_dir is given
    (seed files), and it must stay inside base_dir."""
    if not isinstance(spec, Mapping):
        raise bad_request("files must be an object mapping repo paths to contents")
    sources: dict[str, FileSource] = {}
    for repo_path, content in spec.items():
        if not isinstance(content, Mapping) or len(content) != 1:
            raise bad_request(f"file {repo_path!r}: give exactly one of text, base64 or path")
        (kind, value), = content.items()
        if not isinstance(value, str):
            raise bad_request(f"file {repo_path!r}: {kind} must be a string")
        if kind == "text":
            sources[repo_path] = value.encode()
        elif kind == "base64":
            try:
                sources[repo_path] = base64.b64decode(value, validate=True)
            except binascii.Error:
                raise bad_request(f"file {repo_path!r}: invalid base64") from None
        elif kind == "path" and base_dir is not None:
            local = (base_dir / value).resolve()
            if base_dir.resolve() not in local.parents or not local.is_file():
                raise bad_request(f"file {repo_path!r}: {value!r} is not a file inside {base_dir}")
            sources[repo_path] = local
        else:
            raise bad_request(f"file {repo_path!r}: unsupported content kind {kind!r}")
    return sources


@dataclass(slots=True)
class RevisionSeed:
    files: dict[str, FileSource] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    message: str = "Upload files"
    author: str | None = None
    date: str | None = None


@dataclass(slots=True)
class DiscussionSeed:
    author: str
    title: str
    description: str = ""
    comments: list[tuple[str, str]] = field(default_factory=list)  # (author, text)


@dataclass(slots=True)
class RepoSeed:
    repo_id: str
    files: dict[str, FileSource] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    library_name: str | None = None
    card_data: dict[str, Any] | None = None
    created_at: str | None = None
    gated: GatedSetting = False
    private: bool = False
    discussions_disabled: bool = False
    revisions: list[RevisionSeed] = field(default_factory=list)
    discussions: list[DiscussionSeed] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, base_dir: Path | None = None) -> RepoSeed:
        revisions = [
            RevisionSeed(
                files=file_sources_from_json(rev.get("files", {}), base_dir=base_dir),
                deleted=list(rev.get("deleted", [])),
                message=rev.get("message", "Upload files"),
                author=rev.get("author"),
                date=rev.get("date"),
            )
            for rev in raw.get("revisions", [])
        ]
        discussions = [
            DiscussionSeed(
                author=d["author"],
                title=d["title"],
                description=d.get("description", ""),
                comments=[(c["author"], c["text"]) for c in d.get("comments", [])],
            )
            for d in raw.get("discussions", [])
        ]
        return cls(
            repo_id=raw["repo_id"],
            files=file_sources_from_json(raw.get("files", {}), base_dir=base_dir),
            tags=list(raw.get("tags", [])),
            pipeline_tag=raw.get("pipeline_tag"),
            library_name=raw.get("library_name"),
            card_data=raw.get("card_data"),
            created_at=raw.get("created_at"),
            gated=raw.get("gated", False),
            private=bool(raw.get("private", False)),
            discussions_disabled=bool(raw.get("discussions_disabled", False)),
            revisions=revisions,
            discussions=discussions,
        )


def seed_repo(state: EmulatorState, seed: RepoSeed) -> str:
    """Creates the repo, pushes its later revisions, opens its discussions. Returns the final main sha."""
    sha = state.create_repo(
        seed.repo_id,
        files=seed.files,
        tags=seed.tags,
        pipeline_tag=seed.pipeline_tag,
        library_name=seed.library_name,
        card_data=seed.card_data,
        created_at=seed.created_at,
        gated=seed.gated,
        private=seed.private,
        discussions_disabled=False,  # opened below first, then the switch is applied
    )
    for revision in seed.revisions:
        sha = state.push_revision(
            seed.repo_id,
            files=revision.files,
            deleted=revision.deleted,
            message=revision.message,
            author=revision.author,
            date=revision.date,
        )
    for discussion in seed.discussions:
        num = state.create_discussion(
            seed.repo_id, author=discussion.author, title=discussion.title, description=discussion.description
        )
        for author, text in discussion.comments:
            state.add_comment(seed.repo_id, num, author=author, text=text)
    if seed.discussions_disabled:
        state.update_settings(seed.repo_id, discussions_disabled=True)
    return sha


def seed_from_file(state: EmulatorState, path: Path) -> list[str]:
    """Applies a JSON seed file (see the module docstring); repos that already exist are left alone.
    File "path" entries are resolved relative to the seed file. Returns the ids of the repos created."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    for token, user in raw.get("tokens", {}).items():
        state.add_token(token, user)
    created: list[str] = []
    for repo_raw in raw.get("repos", []):
        seed = RepoSeed.from_json(repo_raw, base_dir=path.parent)
        if not state.has_repo(seed.repo_id):
            seed_repo(state, seed)
            created.append(seed.repo_id)
    return created
