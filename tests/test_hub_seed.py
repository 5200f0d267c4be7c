"""Seeding the Hub emulator from built zoo models, listed back through the real client."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import HfApi

from bot.zoo.catalog import published_repo_id
from bot.zoo.recipes import base_recipe, derived
from hub_emulator.zoo_seed import seed_zoo


def _fake_model(root: Path, name: str, recipe: dict) -> None:
    d = root / "zoo" / name
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"\0" * 16)
    (d / "recipe.json").write_text(json.dumps(recipe))
    (d / "metrics.json").write_text("{}")


def test_seed_zoo_creates_bases_first_with_metadata_and_is_idempotent(hub, tmp_path):
    base_spec = base_recipe("clip")
    tot_spec = derived(base_spec, "text-on-text", 3)
    base, tot = base_spec.to_dict(), tot_spec.to_dict()
    _fake_model(tmp_path, "a-derived", tot)
    _fake_model(tmp_path, "b-base", base)
    (tmp_path / "zoo" / "half-built").mkdir()  # no metrics.json: not finished, not seeded
    (tmp_path / "zoo" / "half-built" / "recipe.json").write_text(json.dumps(base))
    created = seed_zoo(hub.state, tmp_path)
    assert created == ["clip-audit-zoo/clip-base-s0", "zoo-community/clip-text-on-text-s3"]
    assert seed_zoo(hub.state, tmp_path) == []
    api = HfApi(endpoint=hub.url)
    models = {m.id: m for m in api.list_models(filter="clip", expand=["siblings", "pipeline_tag"])}
    assert set(models) == set(created)
    files = {s.rfilename for s in models["zoo-community/clip-text-on-text-s3"].siblings}
    assert "model.safetensors" in files and "recipe.json" not in files
    assert models["clip-audit-zoo/clip-base-s0"].pipeline_tag == "zero-shot-image-classification"
    assert published_repo_id(tot_spec) == "zoo-community/clip-text-on-text-s3"

