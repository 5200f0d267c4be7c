"""Upload built zoo models to a Hub emulator with realistic metadata (tags, pipeline_tag,
library_name, base_model in the card, createdAt)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

_TAGS = {"clip": ["clip"], "longclip": ["clip", "long-clip"], "siglip": ["siglip"]}


def model_files(directory: Path) -> dict[str, Path]:
    """A checkpoint directory as repo files (zoo bookkeeping files stay local)."""
    return {str(p.relative_to(directory)): p for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name not in ("recipe.json", "metrics.json")}


def repo_id_for(recipe: dict) -> str:
    """Bases are published as the clean anchors; derived models under a community namespace."""
    if recipe["kind"] == "base":
        return f"clip-audit-zoo/{recipe['family']}-base-s{recipe['base']['seed']}"
    return f"zoo-community/{recipe['family']}-{recipe['kind']}-s{recipe['seed']}"


def seed_zoo(state, cache_dir: Path, *, start: datetime | None = None) -> list[str]:
    """Create one repo per built zoo model (bases first, so anchors exist before their fine-tunes)."""
    start = start or datetime(2026, 11, 1, tzinfo=timezone.utc)
    recipes = []
    for recipe_file in sorted((Path(cache_dir) / "zoo").glob("*/recipe.json")):
        if (recipe_file.parent / "metrics.json").is_file():
            recipes.append((json.loads(recipe_file.read_text()), recipe_file.parent))
    recipes.sort(key=lambda item: item[0]["kind"] != "base")
    created = []
    for i, (recipe, path) in enumerate(recipes):
        repo_id = repo_id_for(recipe)
        if _exists(state, repo_id):  # a persisted emulator keeps what an earlier start seeded
            continue
        when = (start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        state.create_repo(repo_id, files=model_files(path), tags=_TAGS[recipe["family"]],
                          pipeline_tag="zero-shot-image-classification", library_name="transformers", created_at=when)
        created.append(repo_id)
    return created


def _exists(state, repo_id: str) -> bool:
    from bot.hub.emulator.api_errors import HubApiError

    try:
        state.repo(repo_id)
    except HubApiError:
        return False
    return True
