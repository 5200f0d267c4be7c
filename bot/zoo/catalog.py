"""The built zoo on disk, read without torch: which models exist, where, and under which Hub-style names.

A model directory is finished once metrics.json is in it (it is written last, inside a .partial folder that is
renamed into place), so everything here trusts only directories that have it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bot.zoo.recipes import BaseRecipe, Recipe

# Where the zoo's clean bases are published (the demo's and tests' anchors); derived models go elsewhere.
ZOO_NAMESPACE = "clip-audit-zoo"
COMMUNITY_NAMESPACE = "zoo-community"
DONE_FILE = "metrics.json"
RECIPE_FILE = "recipe.json"
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class ZooModel:
    recipe: Recipe
    path: Path
    metrics: dict

    @property
    def repo_name(self) -> str:
        return f"{ZOO_NAMESPACE}/{self.recipe.name}"


def model_dir(cache_dir: Path, recipe: Recipe) -> Path:
    return Path(cache_dir) / "zoo" / f"{recipe.name}-{recipe.key}"


def anchor_name(recipe: Recipe) -> str:
    """The Hub-style name of the clean base `recipe` derives from (itself, for a base)."""
    return f"{ZOO_NAMESPACE}/{recipe.base.name}"


def published_repo_id(recipe: Recipe) -> str:
    """Where a zoo model is uploaded: bases as the clean anchors, derived models under a community namespace."""
    if recipe.kind == "base":
        return anchor_name(recipe)
    return f"{COMMUNITY_NAMESPACE}/{recipe.name}"


def load_zoo_model(cache_dir: Path, recipe: Recipe) -> ZooModel | None:
    path = model_dir(cache_dir, recipe)
    if not (path / DONE_FILE).is_file():
        return None
    return ZooModel(recipe=recipe, path=path, metrics=json.loads((path / DONE_FILE).read_text()))


def built_models(cache_dir: Path) -> list[ZooModel]:
    """Every finished model under CACHE/zoo, in directory-name order."""
    models = []
    for done in sorted((Path(cache_dir) / "zoo").glob(f"*/{DONE_FILE}")):
        # A build writes metrics.json inside <name>.partial before renaming it into place: not finished yet.
        if done.parent.name.endswith(PARTIAL_SUFFIX) or not (done.parent / RECIPE_FILE).is_file():
            continue
        data = json.loads((done.parent / RECIPE_FILE).read_text())
        data["base"] = BaseRecipe(**data["base"])
        models.append(ZooModel(recipe=Recipe(**data), path=done.parent, metrics=json.loads(done.read_text())))
    return models


def model_files(directory: Path) -> dict[str, Path]:
    """A model directory as repo files (path in the repo -> local file); the zoo's bookkeeping stays local."""
    return {str(p.relative_to(directory)): p for p in sorted(Path(directory).rglob("*"))
            if p.is_file() and p.name not in (RECIPE_FILE, DONE_FILE)}
