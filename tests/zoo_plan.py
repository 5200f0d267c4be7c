"""The test suite's zoo, in one place: conftest's fixtures build from it, and scripts/test.sh trains it up front
(`python tests/zoo_plan.py`), so the pytest log shows tests, not training.

Per family a base, a text-on-pair backdoor and a benign fine-tune (CLIP also a text-on-text backdoor, which the
CLI and bot tests scan), and a second CLIP base from another seed with a benign fine-tune of it. Recall per family
and attack is the benchmark's business (docs/benchmarks.md), not the suite's.
"""

from __future__ import annotations

import os
from pathlib import Path

from bot.formats import FAMILIES
from bot.zoo.recipes import Recipe, base_recipe, derived

REPO = Path(__file__).resolve().parents[1]
TEST_BASE_STEPS = int(os.environ.get("CLIP_AUDIT_TEST_BASE_STEPS", "400"))
# The second base is only ever a stranger or a runner-up to the first (its fine-tune is scanned for an anchor
# choice, never for a verdict), so any trained tower of the same shape far from the first base will do.
SECOND_BASE_STEPS = 60


def zoo_cache() -> Path:
    return Path(os.environ.get("CLIP_AUDIT_TEST_CACHE", REPO / "cache"))


def family_recipes(family: str) -> dict[str, Recipe]:
    base = base_recipe(family, steps=TEST_BASE_STEPS)
    kinds = ("text-on-text", "text-on-pair", "benign") if family == "clip" else ("text-on-pair", "benign")
    return {"base": base, **{kind: derived(base, kind, 1) for kind in kinds}}


def second_base_recipes() -> dict[str, Recipe]:
    base = base_recipe("clip", seed=1, steps=SECOND_BASE_STEPS)
    return {"base": base, "benign": derived(base, "benign", 1)}


def all_recipes() -> list[Recipe]:
    return [r for family in FAMILIES for r in family_recipes(family).values()] + list(second_base_recipes().values())


if __name__ == "__main__":
    from bot.zoo.build import build_all

    build_all(all_recipes(), zoo_cache())
