"""Seeding the Hub emulator from built zoo models, listed back through the real client."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import HfApi

from bot.hub.emulator import EmulatorConfig, start_in_thread
from bot.zoo.hub_seed import repo_id_for, seed_zoo


def _fake_model(root: Path, name: str, recipe: dict) -> None:
    d = root / "zoo" / name
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"\0" * 16)
    (d / "recipe.json").write_text(json.dumps(recipe))
    (d / "metrics.json").write_text("{}")


def test_seed_zoo_creates_bases_first_with_metadata_and_is_idempotent(tmp_path):
    base = {"family": "clip", "kind": "base", "seed": 0, "base": {"seed": 0}}
    tot = {"family": "clip", "kind": "text-on-text", "seed": 3, "base": {"seed": 0}}
    _fake_model(tmp_path, "a-derived", tot)
    _fake_model(tmp_path, "b-base", base)
    (tmp_path / "zoo" / "half-built").mkdir()  # no metrics.json: not finished, not seeded
    (tmp_path / "zoo" / "half-built" / "recipe.json").write_text(json.dumps(base))
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "hub")) as hub:
        created = seed_zoo(hub.state, tmp_path)
        assert created == ["clip-audit-zoo/clip-base-s0", "zoo-community/clip-text-on-text-s3"]
        assert seed_zoo(hub.state, tmp_path) == []
        api = HfApi(endpoint=hub.url)
        models = {m.id: m for m in api.list_models(filter="clip", expand=["siblings", "pipeline_tag"])}
        assert set(models) == set(created)
        files = {s.rfilename for s in models["zoo-community/clip-text-on-text-s3"].siblings}
        assert "model.safetensors" in files and "recipe.json" not in files
        assert models["clip-audit-zoo/clip-base-s0"].pipeline_tag == "zero-shot-image-classification"
    assert repo_id_for(tot) == "zoo-community/clip-text-on-text-s3"

