"""The emulator's data model: repos, commits, files and discussions, as plain typed records.

Every record converts to and from JSON-safe dicts, which is how the storage layer persists them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .validation import MAIN_BRANCH

DiscussionStatus = Literal["open", "closed", "merged", "draft"]
GatedMode = Literal["auto", "manual"]


@dataclass(slots=True)
class FileEntry:
    sha256: str
    size: int
    git_sha1: str  # blob id: git hash of the content, or of the LFS pointer for LFS files
    lfs: bool
    pointer_size: int | None = None

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1


@dataclass(slots=True)
class Commit:
    sha: str
    parent: str | None
    summary: str
    description: str
    author: str
    date: str
    files: dict[str, FileEntry]
    # Facts the Hub derives from the tree once per commit (README front matter, config.json, safetensors headers).
    card_data: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    safetensors: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Commit:
        files = {path: FileEntry(**entry) for path, entry in raw["files"].items()}
        return cls(**{**raw, "files": files})


@dataclass(slots=True)
class Event:
    id: str
    type: str  # "comment" | "status-change" | "commit" | "title-change"
    created_at: str
    author: str
    data: dict[str, Any]


@dataclass(slots=True)
class Discussion:
    id: str
    num: int
    title: str
    author: str
    created_at: str
    status: DiscussionStatus
    is_pull_request: bool
    events: list[Event] = field(default_factory=list)
    base_sha: str | None = None  # PRs: the main commit the PR branched from
    merge_commit: str | None = None

    @property
    def pr_ref(self) -> str:
        return f"refs/pr/{self.num}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Discussion:
        events = [Event(**event) for event in raw["events"]]
        return cls(**{**raw, "events": events})


@dataclass(slots=True)
class Repo:
    repo_id: str
    object_id: str
    created_at: str
    refs: dict[str, str]  # "main" and "refs/pr/N" -> commit sha
    commits: dict[str, Commit]
    discussions: list[Discussion] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    library_name: str | None = None
    private: bool = False
    gated: GatedMode | Literal[False] = False
    granted_users: list[str] = field(default_factory=list)
    discussions_disabled: bool = False
    downloads: int = 0
    likes: int = 0

    @property
    def owner(self) -> str:
        return self.repo_id.split("/")[0]

    @property
    def head(self) -> Commit:
        return self.commits[self.refs[MAIN_BRANCH]]

    def discussion(self, num: int) -> Discussion | None:
        if 1 <= num <= len(self.discussions):
            return self.discussions[num - 1]
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Repo:
        commits = {sha: Commit.from_dict(commit) for sha, commit in raw["commits"].items()}
        discussions = [Discussion.from_dict(d) for d in raw["discussions"]]
        return cls(**{**raw, "commits": commits, "discussions": discussions})
