"""Finding the anchor: the clean public base a suspect model was fine-tuned from.

Order: an explicit --anchor path; else the base the model card or config names,
when we hold that base locally; else the family's default base. With none, the
detector still runs but the verdict is "inconclusive", never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.encoders.layout import CheckpointInfo
from bot.zoo.catalog import anchor_name, built_models
from bot.zoo.recipes import base_recipe


@dataclass(frozen=True)
class Anchor:
    path: Path
    name: str
    how: str  # "--anchor" | "base_model" | "family default"


def known_anchors(anchor_cache: Path) -> dict[str, Path]:
    """Clean bases held locally: the zoo's pretrained bases, by their Hub-style name."""
    found: dict[str, Path] = {}
    for model in built_models(anchor_cache):
        if model.recipe.kind == "base":
            found.setdefault(anchor_name(model.recipe), model.path)  # the first in directory order wins
    return found


def family_default(family: str) -> str:
    """The clean base a family falls back to when a card names none we hold: the zoo's seed-0 base."""
    return anchor_name(base_recipe(family))


def resolve_anchor(info: CheckpointInfo, *, explicit: Path | None, anchor_cache: Path,
                   extra: dict[str, Path] | None = None) -> Anchor | None:
    if explicit is not None:
        return Anchor(path=Path(explicit), name=str(explicit), how="--anchor")
    known = {**known_anchors(anchor_cache), **(extra or {})}
    if info.base_model and info.base_model in known:
        return Anchor(path=known[info.base_model], name=info.base_model, how="base_model")
    default = family_default(info.family)
    if default in known:
        return Anchor(path=known[default], name=default, how="family default")
    return None
