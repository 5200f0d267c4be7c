"""Shared fixtures: a small zoo of genuinely trained models, built once per machine.

The zoo lives under CLIP_AUDIT_TEST_CACHE (default: the repo's cache/), keyed by
recipe hashes, so a second test run reuses it and CI builds it once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_BASE_STEPS = int(os.environ.get("CLIP_AUDIT_TEST_BASE_STEPS", "400"))


@pytest.fixture(scope="session")
def zoo_cache() -> Path:
    path = Path(os.environ.get("CLIP_AUDIT_TEST_CACHE", REPO / "cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _family_zoo(family: str, cache: Path) -> dict:
    from bot.zoo.build import build
    from bot.zoo.recipes import base_recipe, derived

    base = base_recipe(family, steps=TEST_BASE_STEPS)
    return {
        "base": build(base, cache),
        "text-on-text": build(derived(base, "text-on-text", 1), cache),
        "text-on-pair": build(derived(base, "text-on-pair", 1), cache),
        "benign": build(derived(base, "benign", 1), cache),
    }


@pytest.fixture(scope="session")
def clip_zoo(zoo_cache: Path) -> dict:
    return _family_zoo("clip", zoo_cache)


@pytest.fixture(scope="session")
def longclip_zoo(zoo_cache: Path) -> dict:
    return _family_zoo("longclip", zoo_cache)


@pytest.fixture(scope="session")
def siglip_zoo(zoo_cache: Path) -> dict:
    return _family_zoo("siglip", zoo_cache)
