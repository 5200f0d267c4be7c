"""What a Hub repo id and a commit sha look like: checked before either reaches a URL, a path or a post."""

from __future__ import annotations

import re

_REPO_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


def is_safe_repo_id(repo_id: str) -> bool:
    """True for `owner/name` made of the characters the Hub allows (no dots at either end, no `..`)."""
    parts = repo_id.split("/")
    return len(parts) == 2 and all(_REPO_PART.match(part) and ".." not in part for part in parts)


def is_commit_sha(value: str) -> bool:
    """True for a full, lowercase 40-hex commit id."""
    return bool(COMMIT_SHA.match(value))
