"""Shared fixtures, one home for each: the state store, the Hub emulator, and a small zoo of genuinely trained
models built once per machine.

The zoo lives under CLIP_AUDIT_TEST_CACHE (default: the repo's cache/), keyed by recipe hashes, so a second
test run reuses it and CI builds it once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Importing hub_fixtures sets HF_HUB_DISABLE_XET, which huggingface_hub reads once, when it is first imported;
# pytest imports this conftest before any test module, and nothing above imports huggingface_hub.
from hub_fixtures import start_hub
from zoo_plan import family_recipes, second_base_recipes
from zoo_plan import zoo_cache as test_zoo_cache

from bot.formats import FAMILIES

if TYPE_CHECKING:
    from bot.state.store import Store
    from hub_emulator import EmulatorHandle



def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "hub(**options): EmulatorConfig overrides for the `hub` fixture, e.g. hub(list_page_size=2)"
    )


# -- state and the Hub ---------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh SQLite state store; its directory does not exist beforehand (the Store creates it)."""
    from bot.state.store import Store

    with Store(tmp_path / "state" / "state.db") as opened:
        yield opened


@pytest.fixture
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmulatorHandle]:
    """The standard Hub emulator (hub_fixtures.TOKENS), serving from tmp_path/hub-data, stopped after the test.

    A module or test marked `pytest.mark.hub(**options)` gets those EmulatorConfig options on top.
    """
    marker = request.node.get_closest_marker("hub")
    handle = start_hub(tmp_path / "hub-data", **(marker.kwargs if marker else {}))
    yield handle
    handle.stop()


# -- the zoo -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def zoo_cache() -> Path:
    path = test_zoo_cache()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _build_family_zoo(family: str, cache: Path) -> dict:
    """A family's test models (tests/zoo_plan.py), built unless scripts/test.sh already did."""
    from bot.zoo.build import build

    return {kind: build(recipe, cache) for kind, recipe in family_recipes(family).items()}


@pytest.fixture(scope="session")
def zoo_of(zoo_cache: Path) -> Callable[[str], dict]:
    """zoo_of(family) -> {"base", "text-on-pair", "benign" (CLIP: and "text-on-text"): built model}; each family
    once a session."""
    built: dict[str, dict] = {}

    def family_models(family: str) -> dict:
        if family not in built:
            built[family] = _build_family_zoo(family, zoo_cache)
        return built[family]

    return family_models


@pytest.fixture(scope="session", params=FAMILIES)
def family_zoo(request: pytest.FixtureRequest, zoo_of: Callable[[str], dict]) -> tuple[str, dict]:
    """(family, its zoo), once per family: a test that takes it runs for every family."""
    return request.param, zoo_of(request.param)


@pytest.fixture(scope="session")
def clip_zoo(zoo_of: Callable[[str], dict]) -> dict:
    """CLIP's zoo, for tests that need one family only."""
    return zoo_of("clip")


@pytest.fixture(scope="session")
def clip_second_base(zoo_cache: Path) -> dict:
    """A second tiny CLIP base pretrained from another seed (the same architecture as the zoo's seed-0 base) and a
    benign fine-tune of it: a base people could fine-tune that the registry does not know, or a second
    registered base of one shape."""
    from bot.zoo.build import build

    return {kind: build(recipe, zoo_cache) for kind, recipe in second_base_recipes().items()}
