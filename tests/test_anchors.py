"""Finding the anchor (bot/scanning/anchors.py) from fake zoo directories: recipe.json + metrics.json, no weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.encoders.layout import CheckpointInfo
from bot.scanning.anchors import Anchor, family_default, known_anchors, resolve_anchor
from bot.zoo.catalog import model_dir
from bot.zoo.recipes import Recipe, base_recipe, derived


def _held(cache: Path, recipe: Recipe, *, finished: bool = True, directory: Path | None = None) -> Path:
    """A zoo model directory as bot/zoo/build.py leaves it; without metrics.json it is an unfinished build."""
    path = directory if directory is not None else model_dir(cache, recipe)
    path.mkdir(parents=True)
    (path / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))
    (path / "config.json").write_text("{}")
    if finished:
        (path / "metrics.json").write_text(json.dumps({"kind": recipe.kind}))
    return path


def _info(tmp_path: Path, *, family: str = "clip", base_model: str | None = None) -> CheckpointInfo:
    root = tmp_path / "suspect"
    return CheckpointInfo(root=root, family=family, format="transformers-clip", architecture="CLIPModel",
                          config_path=root / "config.json", weight_files=(root / "model.safetensors",),
                          weight_bytes=1024, tokenizer_dir=None, base_model=base_model)  # fmt: skip


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    path = tmp_path / "anchor-cache"
    path.mkdir()
    return path


# -- family_default / known_anchors ---------------------------------------------------------------------


@pytest.mark.parametrize("family", ["clip", "longclip", "siglip"])
def test_family_default_is_the_zoo_seed_0_base(family: str) -> None:
    assert family_default(family) == f"clip-audit-zoo/{family}-base-s0"


def test_family_default_rejects_an_unknown_family() -> None:
    with pytest.raises(ValueError, match="unknown family"):
        family_default("bert")


def test_known_anchors_lists_finished_bases_by_hub_name(cache: Path) -> None:
    clip = _held(cache, base_recipe("clip"))
    siglip1 = _held(cache, base_recipe("siglip", seed=1))
    assert known_anchors(cache) == {"clip-audit-zoo/clip-base-s0": clip, "clip-audit-zoo/siglip-base-s1": siglip1}


def test_known_anchors_is_empty_without_a_zoo(tmp_path: Path) -> None:
    assert known_anchors(tmp_path / "nowhere") == {}
    assert known_anchors(tmp_path) == {}


def test_unfinished_builds_are_ignored(cache: Path) -> None:
    _held(cache, base_recipe("clip"), finished=False)
    longclip = _held(cache, base_recipe("longclip"))
    assert known_anchors(cache) == {"clip-audit-zoo/longclip-base-s0": longclip}


def test_derived_models_are_never_anchors(cache: Path) -> None:
    base = base_recipe("clip")
    for kind, seed in (("text-on-text", 1), ("text-on-pair", 1), ("benign", 1)):
        recipe = derived(base, kind, seed)
        # Even a derived model that sorts first, and whose base name is the one asked for, is not an anchor.
        _held(cache, recipe, directory=cache / "zoo" / f"0-{recipe.name}-{recipe.key}")
    assert known_anchors(cache) == {}
    assert resolve_anchor(_info(cache, base_model="clip-audit-zoo/clip-base-s0"), explicit=None,
                          anchor_cache=cache) is None  # fmt: skip

    held = _held(cache, base)
    assert known_anchors(cache) == {"clip-audit-zoo/clip-base-s0": held}


def test_the_first_build_in_directory_order_wins(cache: Path) -> None:
    # Two bases with one Hub name (same family and seed, different step counts): different cache keys.
    short, long = base_recipe("clip", steps=100), base_recipe("clip", steps=400)
    assert short.key != long.key
    first = min(model_dir(cache, short), model_dir(cache, long))
    _held(cache, long)
    _held(cache, short)
    assert known_anchors(cache) == {"clip-audit-zoo/clip-base-s0": first}


def test_a_build_still_in_its_partial_folder_is_not_an_anchor(cache: Path) -> None:
    recipe = base_recipe("clip")
    _held(cache, recipe, directory=model_dir(cache, recipe).with_name(model_dir(cache, recipe).name + ".partial"))
    assert known_anchors(cache) == {}


# -- resolve_anchor -------------------------------------------------------------------------------------


def test_explicit_anchor_wins_over_everything(cache: Path, tmp_path: Path) -> None:
    _held(cache, base_recipe("clip"))
    explicit = tmp_path / "my-base"
    info = _info(tmp_path, base_model="clip-audit-zoo/clip-base-s0")
    found = resolve_anchor(info, explicit=explicit, anchor_cache=cache, extra={"clip-audit-zoo/clip-base-s0": cache})
    assert found == Anchor(path=explicit, name=str(explicit), how="--anchor")
    # ...even with nothing held at all, and given as a string
    assert resolve_anchor(_info(tmp_path), explicit=str(explicit), anchor_cache=tmp_path / "empty") == found


def test_card_base_model_held_locally_is_used(cache: Path, tmp_path: Path) -> None:
    _held(cache, base_recipe("clip"))  # the family default is held too, but the card names another base
    seed1 = _held(cache, base_recipe("clip", seed=1))
    found = resolve_anchor(_info(tmp_path, base_model="clip-audit-zoo/clip-base-s1"), explicit=None,
                           anchor_cache=cache)  # fmt: skip
    assert found == Anchor(path=seed1, name="clip-audit-zoo/clip-base-s1", how="base_model")


def test_unknown_base_model_falls_back_to_the_family_default(cache: Path, tmp_path: Path) -> None:
    clip = _held(cache, base_recipe("clip"))
    siglip = _held(cache, base_recipe("siglip"))
    found = resolve_anchor(_info(tmp_path, base_model="openai/clip-vit-base-patch32"), explicit=None,
                           anchor_cache=cache)  # fmt: skip
    assert found == Anchor(path=clip, name="clip-audit-zoo/clip-base-s0", how="family default")
    # no base model named at all: the same fallback, for the checkpoint's own family
    found = resolve_anchor(_info(tmp_path, family="siglip"), explicit=None, anchor_cache=cache)
    assert found == Anchor(path=siglip, name="clip-audit-zoo/siglip-base-s0", how="family default")


def test_nothing_held_gives_no_anchor(cache: Path, tmp_path: Path) -> None:
    assert resolve_anchor(_info(tmp_path, base_model="openai/clip-vit-base-patch32"), explicit=None,
                          anchor_cache=cache) is None  # fmt: skip
    # Bases are held, but neither the one named nor this family's default (seed 0).
    _held(cache, base_recipe("clip", seed=1))
    _held(cache, base_recipe("siglip"))
    _held(cache, base_recipe("clip"), finished=False)
    assert resolve_anchor(_info(tmp_path), explicit=None, anchor_cache=cache) is None
    assert resolve_anchor(_info(tmp_path, family="longclip", base_model="acme/other"), explicit=None,
                          anchor_cache=cache) is None  # fmt: skip


def test_extra_anchors_are_honoured(cache: Path, tmp_path: Path) -> None:
    fetched = tmp_path / "fetched" / "openai-clip"
    info = _info(tmp_path, base_model="openai/clip-vit-base-patch32")
    found = resolve_anchor(info, explicit=None, anchor_cache=cache, extra={"openai/clip-vit-base-patch32": fetched})
    assert found == Anchor(path=fetched, name="openai/clip-vit-base-patch32", how="base_model")

    # an extra entry under the family default's name serves as the fallback
    found = resolve_anchor(_info(tmp_path), explicit=None, anchor_cache=cache,
                           extra={"clip-audit-zoo/clip-base-s0": fetched})  # fmt: skip
    assert found == Anchor(path=fetched, name="clip-audit-zoo/clip-base-s0", how="family default")

    # and an extra entry replaces the local copy held under the same name
    _held(cache, base_recipe("clip"))
    found = resolve_anchor(_info(tmp_path, base_model="clip-audit-zoo/clip-base-s0"), explicit=None,
                           anchor_cache=cache, extra={"clip-audit-zoo/clip-base-s0": fetched})  # fmt: skip
    assert found == Anchor(path=fetched, name="clip-audit-zoo/clip-base-s0", how="base_model")

    # extras that match nothing change nothing
    assert resolve_anchor(_info(tmp_path, family="siglip"), explicit=None, anchor_cache=cache,
                          extra={"acme/unrelated": fetched}) is None  # fmt: skip
