"""Fetching the registered bases a suspect could be a fine-tune of, each pinned to its commit.

The candidates are the registry entries with the suspect's fingerprint (read from its safetensors headers);
the weights choose among them later, in the scanning child. An entry's commit is the reviewed sha in the
registry, else the pin the store made the first time the bot fetched it (trust on first use). When the
repo's head has moved away from the pin, the pinned commit is still the one compared with, and the move is
logged and reported: a base that changes under the same name is exactly what an attacker would arrange.
A base calibrated at its pinned commit (`clip-audit calibrate`) travels with its thresholds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.anchors.calibrations import load_calibration
from bot.anchors.fingerprint import Fingerprint
from bot.anchors.registry import AnchorEntry, Registry
from bot.anchors.selection import LocalBase
from bot.errors import HubError, HubUnavailableError, RateLimitedError, SkipRepo
from bot.hub.client import HubClient
from bot.hub.families import plan_scan
from bot.hub.fetch import fetch_snapshot
from bot.settings import Settings
from bot.state.store import Store

logger = logging.getLogger(__name__)

PIN_REGISTRY = "registry"
PIN_FIRST_USE = "first use"


def pinned_commit(entry: AnchorEntry, client: HubClient, store: Store) -> tuple[str, str, str | None]:
    """(sha, how it is pinned, the head when it moved away from the pin) for `entry`; pins it on first use."""
    head = client.head_sha(entry.repo_id)
    if entry.sha is not None:
        return entry.sha, PIN_REGISTRY, head if head != entry.sha else None
    pin = store.anchor_pin(entry.id)
    if pin is None:
        pin = store.pin_anchor(entry.id, head)
        logger.warning("anchor %s pinned on first use at %s", entry.id, pin.sha)
    moved = head if head != pin.sha else None
    if moved:
        logger.warning("anchor %s moved on the Hub from its pin %s to %s: the pin is kept", entry.id, pin.sha, head)
    return pin.sha, PIN_FIRST_USE, moved


def fetch_candidates(fingerprint: Fingerprint | None, *, registry: Registry, client: HubClient, store: Store,
                     settings: Settings, skip_ids: Sequence[str] = ()) -> tuple[list[LocalBase], list[str]]:
    """The registered bases with `fingerprint`, downloaded; and a line for each that could not be had."""
    if fingerprint is None:
        return [], []
    bases: list[LocalBase] = []
    problems: list[str] = []
    for entry in registry.candidates(fingerprint):
        if entry.id in skip_ids:
            continue
        try:
            sha, pin, moved = pinned_commit(entry, client, store)
            plan = plan_scan(client, entry.repo_id, sha=sha, max_bytes=settings.max_download_bytes)
            path = fetch_snapshot(client, entry.repo_id, sha, plan.files, cache_dir=settings.cache_dir,
                                  max_bytes=settings.max_download_bytes)  # fmt: skip
        except (RateLimitedError, HubUnavailableError):
            raise  # passing trouble: the job is retried, never scanned without its anchor
        except (SkipRepo, HubError) as error:
            logger.warning("registered base %s cannot serve as anchor: %s", entry.id, error)
            problems.append(f"registered base {entry.id} could not be fetched: {error}")
            continue
        stored = load_calibration(settings.calibrations_dir, entry.id, sha)
        bases.append(LocalBase(id=entry.id, path=path, subfolder=entry.subfolder, sha=sha, pin=pin, moved_to=moved,
                               calibration=stored.calibration if stored is not None else None))
    return bases, problems
