"""Finding the anchor: the clean public base a suspect model was fine-tuned from.

Order: an explicit --anchor path; else the base the model card or config names,
when we hold that base locally; else the family's default base. With none, the
detector still runs but the verdict is "inconclusive", never a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bot.encoders.layout import CheckpointInfo

# The clean base each family defaults to when a card names none we hold.
FAMILY_DEFAULTS = {
    "clip": "clip-audit-zoo/clip-base-s0",
    "longclip": "clip-audit-zoo/longclip-base-s0",
    "siglip": "clip-audit-zoo/siglip-base-s0",
}


@dataclass(frozen=True)
class Anchor:
    path: Path
    name: str
    how: str  # "--anchor" | "base_model" | "family default"


def known_anchors(cache_dir: Path) -> dict[str, Path]:
    """Clean bases held locally: the zoo's pretrained bases, by their Hub-style name."""
    found: dict[str, Path] = {}
    zoo = Path(cache_dir) / "zoo"
    if not zoo.is_dir():
        return found
    for recipe_file in sorted(zoo.glob("*/recipe.json")):
        if recipe_file.parent.name.endswith(".partial"):
            continue
        recipe = json.loads(recipe_file.read_text())
        if recipe.get("kind") == "base" and (recipe_file.parent / "metrics.json").is_file():
            found.setdefault(f"clip-audit-zoo/{recipe['family']}-base-s{recipe['base']['seed']}", recipe_file.parent)
    return found


def resolve_anchor(info: CheckpointInfo, *, explicit: Path | None, cache_dir: Path,
                   extra: dict[str, Path] | None = None) -> Anchor | None:
    if explicit is not None:
        return Anchor(path=Path(explicit), name=str(explicit), how="--anchor")
    known = {**known_anchors(cache_dir), **(extra or {})}
    if info.base_model and info.base_model in known:
        return Anchor(path=known[info.base_model], name=info.base_model, how="base_model")
    default = FAMILY_DEFAULTS.get(info.family)
    if default and default in known:
        return Anchor(path=known[default], name=default, how="family default")
    return None
