"""Registered bases that are already on this machine: the zoo's bases, built under the anchor cache.

`clip-audit scan PATH` (no Hub involved) chooses its anchor among these, by the weights like the bot does.
The bot itself never uses local copies: it fetches registered bases from the Hub, pinned to their commits.
"""

from __future__ import annotations

from pathlib import Path

from bot.anchors.fingerprint import Fingerprint
from bot.anchors.registry import Registry
from bot.anchors.selection import LocalBase
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
