"""Identifiers, hashes and timestamps in the exact shapes the Hub uses."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timezone
from typing import Any

LFS_POINTER_TEMPLATE = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"


def format_date(moment: datetime) -> str:
    """2026-01-02T12:00:00.000Z: millisecond precision, always UTC with a Z suffix."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_date(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


def now_iso() -> str:
    return format_date(datetime.now(timezone.utc))


def normalize_date(value: str | datetime | None) -> str:
    """Accepts a datetime, an ISO string or None (now) and returns the Hub's date format."""
    if value is None:
        return now_iso()
    if isinstance(value, datetime):
        return format_date(value)
    return format_date(parse_date(value))


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, as `git hash-object` computes it."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"blob {len(data)}\0".encode())
    digest.update(data)
    return digest.hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return LFS_POINTER_TEMPLATE.format(sha256=sha256, size=size).encode()


def commit_sha(payload: dict[str, Any]) -> str:
    """A 40-hex commit id derived from the commit's content plus a nonce, so ids never collide."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(canonical.encode())
    digest.update(secrets.token_bytes(8))
    return digest.hexdigest()


def object_id_for(name: str) -> str:
    """A stable 24-hex id (MongoDB ObjectId shape) for a user or repo name.

    Stable so a bot can compare webhook author ids with its own whoami id across restarts.
    """
    return hashlib.sha256(f"emulator:{name}".encode()).hexdigest()[:24]


def new_object_id() -> str:
    return secrets.token_hex(12)
