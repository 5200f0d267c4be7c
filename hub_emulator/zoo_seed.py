"""Upload built zoo models to a Hub emulator with realistic metadata (tags, pipeline_tag,
library_name, base_model in the card, createdAt)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from bot.zoo.catalog import built_models, model_files, published_repo_id

from .api_errors import HubApiError

_TAGS = {"clip": ["clip"], "longclip": ["clip", "long-clip"], "siglip": ["siglip"]}


def seed_zoo(state, cache_dir: Path, *, start: datetime | None = None) -> list[str]:
    """Create one repo per built zoo model (bases first, so anchors exist before their fine-tunes)."""
    start = start or datetime(2026, 11, 1, tzinfo=timezone.utc)
    models = sorted(built_models(cache_dir), key=lambda model: model.recipe.kind != "base")
    created = []
    for i, model in enumerate(models):
        repo_id = published_repo_id(model.recipe)
        if _exists(state, repo_id):  # a persisted emulator keeps what an earlier start seeded
            continue
        when = (start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        state.create_repo(repo_id, files=model_files(model.path), tags=_TAGS[model.recipe.family],
                          pipeline_tag="zero-shot-image-classification", library_name="transformers", created_at=when)
        created.append(repo_id)
    return created


def _exists(state, repo_id: str) -> bool:
    try:
        state.repo(repo_id)
    except HubApiError:
        return False
    return True
