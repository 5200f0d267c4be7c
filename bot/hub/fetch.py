"""Downloads exactly the files a scan needs, pinned to a commit sha, into the huggingface_hub cache; evicts
least-recently-used snapshots to keep the cache under a size cap.

"Recently used" is the snapshot folder's mtime: fetch_snapshot touches it on every use, because the cache's
own timestamps (blob mtimes) only say when a file was first downloaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from huggingface_hub import scan_cache_dir
from huggingface_hub.errors import CacheNotFound
from huggingface_hub.file_download import repo_folder_name

from bot.errors import HubError, SkipReason, SkipRepo

from .client import HubClient
from .ids import is_commit_sha

logger = logging.getLogger(__name__)

# Configs, safetensors, tokenizer vocabularies (spiece.model is sentencepiece, not a pickle), model cards.
ALLOWED_SUFFIXES = (".json", ".safetensors", ".txt", ".model", ".md")


@dataclass(frozen=True)
class Eviction:
    freed_bytes: int
    evicted: tuple[tuple[str, str], ...]  # (repo_id, sha) per removed snapshot, least recently used first
    remaining_bytes: int


def check_request(sha: str, files: Sequence[str]) -> None:
    """Refuses unpinned revisions and any file we must never fetch (pickles, unknown kinds, odd paths)."""
    if not is_commit_sha(sha):
        raise ValueError(f"revision must be a full 40-hex commit sha, got {sha!r}")
    if not files:
        raise ValueError("no files to fetch")
    for name in files:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or not name.endswith(ALLOWED_SUFFIXES):
            raise ValueError(f"refusing to fetch {name!r}: only configs, safetensors and tokenizer files")


def fetch_snapshot(
    client: HubClient,
    repo_id: str,
    sha: str,
    files: Sequence[str],
    *,
    cache_dir: Path,
    max_bytes: int,
    repo_type: str = "model",
) -> Path:
    """Downloads `files` of `repo_id` at commit `sha`; returns the local snapshot folder (named after `sha`).

    Sizes are read from the Hub first and nothing is downloaded when they total more than `max_bytes`.
    `repo_type` "dataset" fetches from a dataset repo (the same rules: pinned, only the allowed kinds of file).

    Raises:
        ValueError: `sha` is not a commit sha, or a file is not one we ever fetch.
        SkipRepo: oversized, gated, or the repo/revision is gone.
        HubError / RateLimitedError: the Hub could not serve the files.
    """
    check_request(sha, files)
    action = f"download {repo_id}@{sha[:8]}"
    sizes = {info.path: info.size for info in client.path_sizes(repo_id, files, revision=sha, repo_type=repo_type)}
    missing = [name for name in files if name not in sizes]
    if missing:
        raise HubError(f"cannot {action}: not in that commit: {', '.join(missing)}")
    total = sum(sizes.values())
    if total > max_bytes:
        raise SkipRepo(SkipReason.OVERSIZED, f"the files to scan total {total} bytes, over the {max_bytes} byte limit")

    snapshot: Path | None = None
    for name in files:
        local = client.download(repo_id, name, revision=sha, cache_dir=cache_dir, repo_type=repo_type)
        snapshot = local.parents[len(PurePosixPath(name).parts) - 1]
    assert snapshot is not None
    if snapshot.name != sha:
        raise HubError(f"cannot {action}: the cache returned {snapshot}, not the pinned snapshot")
    os.utime(snapshot)  # mark as used now, for evict()
    logger.info("fetched %s@%s: %d file(s), %d bytes", repo_id, sha[:8], len(files), total)
    return snapshot


def cached_snapshot(cache_dir: Path, repo_id: str, sha: str) -> Path | None:
    """The snapshot folder fetch_snapshot left for model repo `repo_id` at commit `sha`, if it is still in the
    cache (eviction may have removed it); nothing is downloaded."""
    if not is_commit_sha(sha):
        return None
    snapshot = Path(cache_dir) / repo_folder_name(repo_id=repo_id, repo_type="model") / "snapshots" / sha
    return snapshot if snapshot.is_dir() else None


def evict(cache_dir: Path, max_bytes: int, *, keep: Iterable[str] = ()) -> Eviction:
    """Deletes least-recently-used snapshots until the cache holds at most `max_bytes`.

    `keep`: commit shas never to evict (the snapshot being scanned). Blobs shared with a kept snapshot stay.
    """
    try:
        cache = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return Eviction(freed_bytes=0, evicted=(), remaining_bytes=0)
    total = cache.size_on_disk
    if total <= max_bytes:
        return Eviction(freed_bytes=0, evicted=(), remaining_bytes=total)
    protected = set(keep)
    revisions = [(repo.repo_id, revision) for repo in cache.repos for revision in repo.revisions
                 if revision.commit_hash not in protected]  # fmt: skip
    revisions.sort(key=lambda item: _last_used(item[1].snapshot_path))
    chosen: list[tuple[str, str]] = []
    freed = 0
    for repo_id, revision in revisions:
        chosen.append((repo_id, revision.commit_hash))
        freed = cache.delete_revisions(*(sha for _, sha in chosen)).expected_freed_size
        if total - freed <= max_bytes:
            break
    if chosen:
        cache.delete_revisions(*(sha for _, sha in chosen)).execute()
        logger.info("evicted %d snapshot(s), %d bytes, from %s", len(chosen), freed, cache_dir)
    return Eviction(freed_bytes=freed, evicted=tuple(chosen), remaining_bytes=total - freed)


def _last_used(snapshot: Path) -> float:
    try:
        return snapshot.stat().st_mtime
    except OSError:
        return 0.0
