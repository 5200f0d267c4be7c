"""Checks on everything that comes from outside: repo ids, paths inside a repo, revisions."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_PR_REF = re.compile(r"^refs/pr/([1-9][0-9]{0,8})$")
MAX_PATH_LENGTH = 1000
MAIN_BRANCH = "main"


class InvalidInput(ValueError):
    """A caller-supplied value is malformed; the HTTP layer turns it into a 400."""


def validate_name_part(part: str, *, what: str) -> str:
    if not _NAME_PART.match(part) or "--" in part or ".." in part:
        raise InvalidInput(f"invalid {what}: {part!r}")
    return part


def validate_repo_id(repo_id: str) -> str:
    """Returns the id unchanged if it is `owner/name` with Hub-legal characters (this also rules out traversal)."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise InvalidInput(f"repo id must look like 'owner/name', got {repo_id!r}")
    owner, name = repo_id.split("/")
    validate_name_part(owner, what="repo owner")
    validate_name_part(name, what="repo name")
    return repo_id


def validate_repo_path(path: str) -> str:
    """A file path inside a repo: relative, POSIX, no empty/dot segments, nothing under .git/."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_LENGTH:
        raise InvalidInput("file path must be a non-empty string of at most 1000 characters")
    if path.startswith("/") or "\\" in path or "\0" in path:
        raise InvalidInput(f"invalid file path: {path!r}")
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments) or segments[0] == ".git":
        raise InvalidInput(f"invalid file path: {path!r}")
    return path


def is_commit_sha(revision: str) -> bool:
    return bool(_COMMIT_SHA.match(revision))


def pr_number_of(revision: str) -> int | None:
    match = _PR_REF.match(revision)
    return int(match.group(1)) if match else None


def ref_name_of(revision: str) -> str | None:
    """The ref a revision names ("main" or "refs/pr/N"), or None when it is not a ref."""
    if revision in (MAIN_BRANCH, f"refs/heads/{MAIN_BRANCH}"):
        return MAIN_BRANCH
    if pr_number_of(revision) is not None:
        return revision
    return None


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in the Content-Range header

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class RangeNotSatisfiable(ValueError):
    pass


def parse_range_header(header: str | None, size: int) -> ByteRange | None:
    """One `bytes=` range (the only kind the client sends); None means serve the whole file."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise RangeNotSatisfiable(header)
            return ByteRange(max(size - suffix, 0), size - 1)
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or start < 0 or end < start:
        raise RangeNotSatisfiable(header)
    return ByteRange(start, min(end, size - 1))
