"""What a Hub repo id, a revision and a commit sha look like: checked before any reaches a URL, a path or a
post."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Matched whole (fullmatch): "$" alone also matches before a final newline, and "acme/x\n" is no repo id.
_REPO_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
# A branch, a tag or a commit as typed after "@": git ref characters, no "..", no empty path part.
_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")


def is_safe_repo_id(repo_id: str) -> bool:
    """True for `owner/name` made of the characters the Hub allows (no dots at either end, no `..`)."""
    parts = repo_id.split("/")
    return len(parts) == 2 and all(_REPO_PART.fullmatch(part) and ".." not in part for part in parts)


def is_commit_sha(value: str) -> bool:
    """True for a full, lowercase 40-hex commit id."""
    return bool(COMMIT_SHA.fullmatch(value))


@dataclass(frozen=True)
class RepoRef:
    """A Hub model repo and, when one was named, the revision asked for (a branch, a tag or a commit)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id


def parse_repo_ref(text: str) -> RepoRef | None:
    """`owner/name` or `owner/name@revision` as a RepoRef; None when `text` is neither."""
    repo_id, at, revision = text.partition("@")
    if not is_safe_repo_id(repo_id):
        return None
    if not at:
        return RepoRef(repo_id)
    if len(revision) > 255 or ".." in revision or not _REVISION.fullmatch(revision):
        return None
    return RepoRef(repo_id, revision)
