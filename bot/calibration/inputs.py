"""What `clip-audit calibrate` starts from, fetched through the bot's one Hub boundary (bot/hub/): the registered
base, pinned to its commit as scans pin it (bot/anchors/remote.py), and the training captions, a dataset
repo's captions.txt pinned to the dataset's commit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.anchors.registry import AnchorEntry, Registry
from bot.anchors.remote import pinned_commit
from bot.caption_corpus import CAPTIONS_FILE, MAX_CAPTIONS_BYTES, CaptionCorpus, parse_captions
from bot.errors import CaptionsDatasetError, HubError, SkipReason, SkipRepo, UncalibratableBaseError, UsageError
from bot.hub.client import HubClient
from bot.hub.families import plan_scan
from bot.hub.fetch import fetch_snapshot
from bot.hub.ids import is_safe_repo_id
from bot.settings import Settings
from bot.state.store import Store

# The Hub's answers that mean "there is nothing at that address for us": the input is wrong, not the Hub down.
_ABSENT = (SkipReason.NOT_FOUND, SkipReason.REVISION_GONE, SkipReason.PRIVATE, SkipReason.GATED)


@dataclass(frozen=True)
class PinnedBase:
    """A registered base, downloaded at the commit it is pinned to."""

    entry: AnchorEntry
    sha: str
    pin: str                  # "registry" | "first use"
    moved_to: str | None      # the repo's head, when it has moved away from the pin
    path: Path                # the snapshot folder


def registry_entry(registry: Registry, anchor_id: str) -> AnchorEntry:
    """Raises UsageError when `anchor_id` is not a registry entry (`clip-audit anchors list`)."""
    entry = registry.get(anchor_id)
    if entry is None:
        raise UsageError(f"{anchor_id!r} is not a registered base; `clip-audit anchors list` shows them and "
                         "`clip-audit anchors add` registers one")
    return entry


def fetch_base(entry: AnchorEntry, *, client: HubClient, store: Store, settings: Settings) -> PinnedBase:
    """Downloads `entry` at its pinned commit (pinning it now on first use, as a scan would).

    Raises:
        HubError: the base is not on the Hub (or not at its pin).
        SkipRepo: it is there but holds nothing scannable (pickle-only, no text tower, oversized).
        UncalibratableBaseError: the registered subfolder holds no text tower.
    """
    try:
        sha, pin, moved = pinned_commit(entry, client, store)
        plan = plan_scan(client, entry.repo_id, sha=sha, max_bytes=settings.max_download_bytes)
        folder = entry.subfolder or ""
        if folder not in plan.text_encoders:
            raise UncalibratableBaseError(f"the registered base {entry.id} has no text tower in "
                                          f"{folder or 'the repo root'} at {sha[:12]}")
        path = fetch_snapshot(client, entry.repo_id, sha, plan.files, cache_dir=settings.cache_dir,
                              max_bytes=settings.max_download_bytes)
    except SkipRepo as error:
        if error.code in _ABSENT:
            raise HubError(f"the registered base {entry.id} cannot be fetched from {client.endpoint}: {error}") \
                from None
        raise SkipRepo(error.code, f"the registered base {entry.id}: {error.detail}") from None
    return PinnedBase(entry=entry, sha=sha, pin=pin, moved_to=moved, path=path)


def fetch_captions(repo_id: str, *, client: HubClient, cache_dir: Path) -> CaptionCorpus:
    """The captions of dataset repo `repo_id` (its captions.txt), fetched pinned to the dataset's commit now.

    Raises:
        CaptionsDatasetError: not a repo id, no such dataset, no captions.txt, or a file in the wrong format.
    """
    if not is_safe_repo_id(repo_id):
        raise CaptionsDatasetError(f"--captions {repo_id!r} is not a Hub dataset repo id (owner/name)")
    try:
        sha = client.head_sha(repo_id, repo_type="dataset")
        present = {info.path for info in client.path_sizes(repo_id, [CAPTIONS_FILE], revision=sha,
                                                            repo_type="dataset")}
        if CAPTIONS_FILE not in present:
            raise CaptionsDatasetError(f"dataset {repo_id}@{sha[:12]} has no {CAPTIONS_FILE} at its root (one "
                                       "caption per line, UTF-8)")
        snapshot = fetch_snapshot(client, repo_id, sha, [CAPTIONS_FILE], cache_dir=cache_dir,
                                  max_bytes=MAX_CAPTIONS_BYTES, repo_type="dataset")
    except SkipRepo as error:
        if error.code is SkipReason.OVERSIZED:
            raise CaptionsDatasetError(f"dataset {repo_id}: {CAPTIONS_FILE} is over the "
                                       f"{MAX_CAPTIONS_BYTES // 1024**2} MiB limit") from None
        raise CaptionsDatasetError(f"no dataset {repo_id} can be read on {client.endpoint}: {error}") from None
    return parse_captions((snapshot / CAPTIONS_FILE).read_bytes(), source=f"dataset {repo_id}@{sha[:12]}")
