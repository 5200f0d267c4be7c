"""Registered bases that are already on this machine: the bases calibrated here (`clip-audit calibrate`), at
their pinned commits in the download cache, and the zoo's bases, built under the anchor cache.

`clip-audit scan PATH` (no Hub involved) chooses its anchor among these, by the weights like the bot does.
The bot itself never uses local copies: it fetches registered bases from the Hub, pinned to their commits.
"""

from __future__ import annotations

from pathlib import Path

from bot.anchors.calibrations import stored_calibrations
from bot.anchors.fingerprint import Fingerprint
from bot.anchors.registry import Registry
from bot.anchors.selection import LocalBase
from bot.hub.fetch import cached_snapshot
from bot.zoo.catalog import anchor_name, built_models


def zoo_bases(anchor_cache: Path) -> dict[str, Path]:
    """The zoo's finished base models under `anchor_cache`, by their Hub-style name."""
    found: dict[str, Path] = {}
    for model in built_models(anchor_cache):
        if model.recipe.kind == "base":
            found.setdefault(anchor_name(model.recipe), model.path)  # the first in directory order wins
    return found


def local_candidates(registry: Registry, fingerprint: Fingerprint | None, anchor_cache: Path) -> list[LocalBase]:
    """The registered bases with this fingerprint that have a local copy."""
    if fingerprint is None:
        return []
    held = zoo_bases(anchor_cache)
    return [LocalBase(id=entry.id, path=held[entry.repo_id], subfolder=entry.subfolder)
            for entry in registry.candidates(fingerprint) if entry.repo_id in held and entry.subfolder is None]


def calibrated_candidates(registry: Registry, fingerprint: Fingerprint | None, *, calibrations_dir: Path,
                          cache_dir: Path) -> list[LocalBase]:
    """The registered bases with this fingerprint that were calibrated here and whose calibrated commit is
    still in the download cache (`clip-audit calibrate` fetched it there), each with its calibration. An entry
    the registry pins to a commit counts only at that commit."""
    if fingerprint is None:
        return []
    found = []
    for entry in registry.candidates(fingerprint):
        for stored in stored_calibrations(calibrations_dir, entry.id):
            snapshot = cached_snapshot(cache_dir, entry.repo_id, stored.sha)
            if snapshot is not None and entry.sha in (None, stored.sha):
                found.append(LocalBase(id=entry.id, path=snapshot, subfolder=entry.subfolder, sha=stored.sha,
                                       pin=stored.pin, calibration=stored.calibration))
    return found


def held_candidates(registry: Registry, fingerprint: Fingerprint | None, *, anchor_cache: Path,
                    calibrations_dir: Path, cache_dir: Path) -> list[LocalBase]:
    """Every registered base with this fingerprint held here: the calibrated ones first, then the zoo's copies
    of the others (a zoo copy is not known to be the calibrated commit, so it never stands in for one)."""
    calibrated = calibrated_candidates(registry, fingerprint, calibrations_dir=calibrations_dir, cache_dir=cache_dir)
    ids = {base.id for base in calibrated}
    return calibrated + [base for base in local_candidates(registry, fingerprint, anchor_cache) if base.id not in ids]
