"""Trusted anchors (bot/anchors/): fingerprints from tensor shapes, the registry of trusted bases, choosing the
anchor by the weights among tiny random text towers, the zoo's local bases, and the AnchorChoice record."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from records import make_record
from torch import nn

from bot.anchors.fingerprint import Fingerprint, fingerprint_from_shapes
from bot.anchors.local import local_candidates, zoo_bases
from bot.anchors.registry import (
    BUILT_IN_FILE,
    REGISTRY_VERSION,
    AnchorEntry,
    Registry,
    add_entry,
    load_registry,
    read_entries,
)
from bot.anchors.selection import (
    MAX_FINE_TUNE_DISTANCE,
    LocalBase,
    _card_finding,
    choose_anchor,
    explicit_choice,
    tower_fingerprint,
    weight_distance,
)
from bot.encoders.text_encoder import TextEncoder
from bot.encoders.tower import TextTower, TowerSpec
from bot.errors import ConfigError
from bot.formats import FAMILIES
from bot.hub.ids import is_commit_sha, is_safe_repo_id
from bot.scan_record import AnchorChoice, AnchorDistance, ScanRecord, Verdict
from bot.zoo.architectures import ARCHITECTURES, build_model
from bot.zoo.catalog import ZOO_NAMESPACE, model_dir
from bot.zoo.recipes import Recipe, base_recipe, derived

SHA = "0123456789abcdef0123456789abcdef01234567"
CLIP_B = Fingerprint(family="clip", hidden=512, layers=12, vocab=49408, positions=77)
ZOO_CLIP = Fingerprint(family="clip", hidden=128, layers=4, vocab=49408, positions=77)


# == fingerprint_from_shapes ================================================================================
# Key layouts as safetensors headers list them (sorted by name, so the vision tower's keys come after the
# text tower's and would overwrite them if they were read).

def _hf_layers(prefix: str, hidden: int, layers: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(layers):
        p = f"{prefix}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[f"{p}self_attn.{proj}.weight"] = (hidden, hidden)
            shapes[f"{p}self_attn.{proj}.bias"] = (hidden,)
        for norm in ("layer_norm1", "layer_norm2"):
            shapes[f"{p}{norm}.weight"] = shapes[f"{p}{norm}.bias"] = (hidden,)
        shapes[f"{p}mlp.fc1.weight"], shapes[f"{p}mlp.fc1.bias"] = (4 * hidden, hidden), (4 * hidden,)
        shapes[f"{p}mlp.fc2.weight"], shapes[f"{p}mlp.fc2.bias"] = (hidden, 4 * hidden), (hidden,)
    return shapes


def _hf_clip(*, prefix: str = "text_model.", hidden: int = 768, layers: int = 12, vocab: int = 49408,
             positions: int = 77, vision: bool = True) -> dict[str, tuple[int, ...]]:
    """transformers CLIPModel (ViT-L/14-like: the vision tower is wider and deeper than the text tower)."""
    shapes = {
        f"{prefix}embeddings.token_embedding.weight": (vocab, hidden),
        f"{prefix}embeddings.position_embedding.weight": (positions, hidden),
        f"{prefix}embeddings.position_ids": (1, positions),  # older checkpoints keep the buffer
        f"{prefix}final_layer_norm.weight": (hidden,),
        f"{prefix}final_layer_norm.bias": (hidden,),
        **_hf_layers(prefix, hidden, layers),
    }
    if vision:
        shapes.update({
            "logit_scale": (),
            "text_projection.weight": (768, hidden),
            "visual_projection.weight": (768, 1024),
            "vision_model.embeddings.class_embedding": (1024,),
            "vision_model.embeddings.patch_embedding.weight": (1024, 3, 14, 14),
            "vision_model.embeddings.position_embedding.weight": (257, 1024),
            "vision_model.embeddings.position_ids": (1, 257),
            "vision_model.pre_layrnorm.weight": (1024,),
            "vision_model.post_layernorm.weight": (1024,),
            **_hf_layers("vision_model.", 1024, 24),
        })
    return dict(sorted(shapes.items()))


def _open_clip(*, text_prefix: str = "", hidden: int = 1024, layers: int = 24, positions: int = 77,
               vocab: int = 49408) -> dict[str, tuple[int, ...]]:
    """open_clip (ViT-H/14-like: text 1024 wide and 24 deep, vision 1280 wide and 32 deep)."""
    p = text_prefix
    shapes: dict[str, tuple[int, ...]] = {
        "logit_scale": (),
        f"{p}token_embedding.weight": (vocab, hidden),
        f"{p}positional_embedding": (positions, hidden),
        f"{p}ln_final.weight": (hidden,),
        f"{p}ln_final.bias": (hidden,),
        f"{p}text_projection": (hidden, 1024),
        "visual.class_embedding": (1280,),
        "visual.positional_embedding": (257, 1280),
        "visual.conv1.weight": (1280, 3, 14, 14),
        "visual.proj": (1280, 1024),
    }
    for tower, width, depth in ((f"{p}transformer", hidden, layers), ("visual.transformer", 1280, 32)):
        for i in range(depth):
            b = f"{tower}.resblocks.{i}."
            shapes.update({
                f"{b}ln_1.weight": (width,), f"{b}ln_2.weight": (width,),
                f"{b}attn.in_proj_weight": (3 * width, width), f"{b}attn.in_proj_bias": (3 * width,),
                f"{b}attn.out_proj.weight": (width, width),
                f"{b}mlp.c_fc.weight": (4 * width, width), f"{b}mlp.c_proj.weight": (width, 4 * width),
            })
    return dict(sorted(shapes.items()))


def _hf_siglip() -> dict[str, tuple[int, ...]]:
    """transformers SiglipModel (siglip-base-patch16-224: the vision tower has 196 positions, text 64)."""
    shapes = {
        "logit_scale": (1,),
        "logit_bias": (1,),
        "text_model.embeddings.token_embedding.weight": (32000, 768),
        "text_model.embeddings.position_embedding.weight": (64, 768),
        "text_model.final_layer_norm.weight": (768,),
        "text_model.head.weight": (768, 768),
        "text_model.head.bias": (768,),
        "vision_model.embeddings.patch_embedding.weight": (768, 3, 16, 16),
        "vision_model.embeddings.position_embedding.weight": (196, 768),
        "vision_model.head.probe": (1, 1, 768),
        "vision_model.head.attention.in_proj_weight": (2304, 768),
        **_hf_layers("text_model.", 768, 12),
        **_hf_layers("vision_model.", 768, 13),  # one more than the text tower, to be told apart
    }
    return dict(sorted(shapes.items()))


def _both_orders(shapes: dict[str, tuple[int, ...]]) -> list[dict[str, tuple[int, ...]]]:
    return [shapes, dict(reversed(list(shapes.items())))]


def test_transformers_clip_reads_the_text_tower_and_ignores_the_vision_tower() -> None:
    want = Fingerprint(family="clip", hidden=768, layers=12, vocab=49408, positions=77)
    for shapes in _both_orders(_hf_clip()):
        assert fingerprint_from_shapes("clip", shapes) == want


def test_transformers_clip_without_the_text_model_prefix() -> None:
    # CLIPTextModel as transformers 5 saves it (and as TextEncoder holds it): no "text_model." nesting.
    shapes = _hf_clip(prefix="", hidden=512, vision=False)
    assert "embeddings.token_embedding.weight" in shapes
    assert fingerprint_from_shapes("clip", shapes) == CLIP_B
    # ...and with the vision tower alongside, whose encoder.layers are under vision_model.
    assert fingerprint_from_shapes("clip", _hf_clip(prefix="", hidden=512)) == CLIP_B


def test_a_clip_model_nested_under_a_prefix_still_ignores_its_vision_tower() -> None:
    # e.g. a training framework's export: the whole CLIPModel under "model."
    shapes = {f"model.{name}": shape for name, shape in _hf_clip().items()}
    assert "model.vision_model.encoder.layers.23.mlp.fc1.weight" in shapes
    assert fingerprint_from_shapes("clip", shapes) == Fingerprint("clip", 768, 12, 49408, 77)


def test_diffusers_text_encoder_with_projection() -> None:
    # SDXL's text_encoder_2: CLIPTextModelWithProjection, 1280 wide, 32 layers.
    shapes = _hf_clip(hidden=1280, layers=32, vision=False) | {"text_projection.weight": (1280, 1280)}
    assert fingerprint_from_shapes("clip", shapes) == Fingerprint("clip", 1280, 32, 49408, 77)


def test_longclip_positions() -> None:
    assert fingerprint_from_shapes("longclip", _hf_clip(hidden=512, positions=248)) == \
        Fingerprint("longclip", 512, 12, 49408, 248)


def test_open_clip_reads_the_text_tower_and_ignores_visual() -> None:
    want = Fingerprint(family="clip", hidden=1024, layers=24, vocab=49408, positions=77)
    for shapes in _both_orders(_open_clip()):
        assert fingerprint_from_shapes("clip", shapes) == want


def test_open_clip_custom_text_layout() -> None:
    # CustomTextCLIP (e.g. open_clip's SigLIP ports): the text tower under "text.".
    shapes = _open_clip(text_prefix="text.", hidden=768, layers=12, positions=64, vocab=32000)
    assert fingerprint_from_shapes("siglip", shapes) == Fingerprint("siglip", 768, 12, 32000, 64)


def test_transformers_siglip_reads_the_text_tower() -> None:
    want = Fingerprint(family="siglip", hidden=768, layers=12, vocab=32000, positions=64)
    for shapes in _both_orders(_hf_siglip()):
        assert fingerprint_from_shapes("siglip", shapes) == want


@pytest.mark.parametrize("family", sorted(ARCHITECTURES))
def test_real_transformers_models_match_the_registered_zoo_fingerprint(family: str) -> None:
    # The keys transformers really writes (built on the meta device: no memory), and the registry's zoo entry.
    arch = ARCHITECTURES[family]
    with torch.device("meta"):
        model = build_model(arch, vocab_size=arch.siglip_vocab_size if family == "siglip" else 49408)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    fingerprint = fingerprint_from_shapes(family, shapes)
    assert fingerprint is not None
    assert (fingerprint.hidden, fingerprint.layers, fingerprint.positions) == \
        (arch.text_hidden, arch.text_layers, arch.max_length)
    entry = load_registry().get(f"{ZOO_NAMESPACE}/{family}-base-s0")
    assert entry is not None and entry.fingerprint == fingerprint and entry.heads == arch.text_heads


@pytest.mark.parametrize("drop", ["token", "position", "layers", "text"])
def test_no_fingerprint_without_token_or_position_embeddings_or_layers(drop: str) -> None:
    shapes = _hf_clip()
    if drop == "token":
        shapes = {k: v for k, v in shapes.items() if "token_embedding" not in k}
    elif drop == "position":
        shapes = {k: v for k, v in shapes.items() if not k.startswith("text_model.embeddings.position_embedding")}
    elif drop == "layers":
        shapes = {k: v for k, v in shapes.items() if not k.startswith("text_model.encoder.")}
    else:  # a vision-only checkpoint: its own position embedding and layers are not a text tower
        shapes = {k: v for k, v in shapes.items() if not k.startswith("text_model.")}
    assert fingerprint_from_shapes("clip", shapes) is None
    assert fingerprint_from_shapes("clip", {}) is None


def test_embeddings_must_be_matrices() -> None:
    shapes = _open_clip() | {"token_embedding.weight": (49408,)}
    assert fingerprint_from_shapes("clip", shapes) is None


def test_fingerprint_describe_and_dict() -> None:
    assert CLIP_B.to_dict() == {"family": "clip", "hidden": 512, "layers": 12, "vocab": 49408, "positions": 77}
    assert CLIP_B.describe() == "clip text tower, width 512, 12 layers, 49408 tokens, 77 positions"


# == the registry ===========================================================================================

def _raw(repo_id: str = "acme/clip-base", **over: object) -> dict[str, object]:
    entry: dict[str, object] = {"repo_id": repo_id, "family": "clip",
                                "fingerprint": {"hidden": 512, "layers": 12, "vocab": 49408, "positions": 77},
                                "heads": 8, "sha": None, "note": "test base"}  # fmt: skip
    entry.update(over)
    return entry


def _registry_file(path: Path, entries: list[object], *, version: object = REGISTRY_VERSION) -> Path:
    path.write_text(json.dumps({"version": version, "entries": entries}))
    return path


def _entry(repo_id: str, fingerprint: Fingerprint = CLIP_B, *, subfolder: str | None = None,
           sha: str | None = None, note: str = "", source: str = "built-in") -> AnchorEntry:
    return AnchorEntry(repo_id=repo_id, subfolder=subfolder, fingerprint=fingerprint, heads=8, sha=sha, note=note,
                       source=source)  # fmt: skip


def test_the_shipped_registry_loads_and_every_entry_is_valid() -> None:
    raw = json.loads(BUILT_IN_FILE.read_text())
    entries = read_entries(BUILT_IN_FILE, source="built-in")
    registry = load_registry()
    assert len(entries) == len(raw["entries"]) >= 20
    assert len({e.id for e in entries}) == len(entries), "duplicate ids would silently collapse"
    assert registry.entries == tuple(entries)
    for entry in entries:
        fp = entry.fingerprint
        assert is_safe_repo_id(entry.repo_id) and fp.family in FAMILIES and entry.source == "built-in"
        assert entry.sha is None or is_commit_sha(entry.sha)
        assert entry.heads is not None and fp.hidden % entry.heads == 0, entry.id
        assert min(fp.hidden, fp.layers, fp.vocab, fp.positions) >= 1
        assert entry.note
    by_id = {e.id: e for e in entries}
    assert by_id["openai/clip-vit-base-patch32"].fingerprint == CLIP_B
    assert by_id["google/siglip-base-patch16-224"].fingerprint == Fingerprint("siglip", 768, 12, 32000, 64)
    assert by_id["BeichenZhang/LongCLIP-L"].fingerprint == Fingerprint("longclip", 768, 12, 49408, 248)


def test_ids_with_a_subfolder() -> None:
    registry = load_registry()
    sdxl = "stabilityai/stable-diffusion-xl-base-1.0"
    first, second = registry.get(f"{sdxl}:text_encoder"), registry.get(f"{sdxl}:text_encoder_2")
    assert first is not None and second is not None
    assert (first.repo_id, first.subfolder, first.id) == (sdxl, "text_encoder", f"{sdxl}:text_encoder")
    assert (second.subfolder, second.fingerprint) == ("text_encoder_2", Fingerprint("clip", 1280, 32, 49408, 77))
    assert first.fingerprint.hidden == 768
    assert registry.get("acme/unregistered") is None and registry.get(f"{sdxl}:unet") is None
    plain = _entry("acme/clip-base")
    assert plain.id == "acme/clip-base" and "subfolder" not in plain.to_json()
    assert _entry("acme/pipe", subfolder="text_encoder").to_json()["subfolder"] == "text_encoder"


def test_candidates_are_exactly_the_entries_with_an_equal_fingerprint() -> None:
    entries = (
        _entry("acme/b32"),
        _entry("acme/long", replace(CLIP_B, family="longclip")),  # same shapes, another family
        _entry("acme/b32-more-layers", replace(CLIP_B, layers=13)),
        _entry("acme/b32-more-tokens", replace(CLIP_B, vocab=49409)),
        _entry("acme/b32-more-positions", replace(CLIP_B, positions=78)),
        _entry("acme/wider", replace(CLIP_B, hidden=768)),
        _entry("acme/pipe", subfolder="text_encoder"),
    )
    registry = Registry(entries)
    assert [e.id for e in registry.candidates(CLIP_B)] == ["acme/b32", "acme/pipe:text_encoder"]
    assert registry.candidates(Fingerprint("clip", 1, 1, 1, 1)) == []
    # the shipped registry: every ViT-B text tower, and nothing else
    shipped = [e.id for e in load_registry().candidates(CLIP_B)]
    assert shipped == ["openai/clip-vit-base-patch32", "openai/clip-vit-base-patch16",
                       "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"]  # fmt: skip


def test_an_operator_file_overrides_a_built_in_entry_and_adds_new_ones(tmp_path: Path) -> None:
    built_in = load_registry()
    operator = _registry_file(tmp_path / "anchors.json", [
        _raw("openai/clip-vit-base-patch32", sha=SHA, note="pinned by the operator"),
        _raw("acme/clip-base"),
        _raw("openai/clip-vit-base-patch32", subfolder="text_encoder"),  # another id: added, not a replacement
    ])
    registry = load_registry(operator)
    assert len(registry.entries) == len(built_in.entries) + 2
    pinned = registry.get("openai/clip-vit-base-patch32")
    assert pinned is not None and (pinned.sha, pinned.note, pinned.source) == (SHA, "pinned by the operator",
                                                                                str(operator))  # fmt: skip
    assert [e.id for e in registry.entries].count("openai/clip-vit-base-patch32") == 1
    added = registry.get("acme/clip-base")
    assert added is not None and added.source == str(operator)
    assert registry.get("openai/clip-vit-base-patch32:text_encoder") is not None
    # the other built-in entries are untouched
    other = registry.get("openai/clip-vit-large-patch14")
    assert other == built_in.get("openai/clip-vit-large-patch14") and other.source == "built-in"
    # a missing operator file changes nothing
    assert load_registry(tmp_path / "missing.json") == built_in == load_registry(None)


def test_add_entry_writes_a_file_that_reads_back_and_replaces_the_same_id(tmp_path: Path) -> None:
    path = tmp_path / "config" / "anchors.json"  # the folder does not exist yet
    first = _entry("acme/clip-base", sha=SHA, note="first", source="cli")
    add_entry(path, first)
    assert read_entries(path, source="op") == [replace(first, source="op")]
    assert json.loads(path.read_text())["version"] == REGISTRY_VERSION

    piped = _entry("acme/pipe", replace(CLIP_B, hidden=768), subfolder="text_encoder", note="pipe")
    add_entry(path, piped)
    assert [e.id for e in read_entries(path, source="op")] == ["acme/clip-base", "acme/pipe:text_encoder"]

    again = replace(first, sha=None, note="second")
    add_entry(path, again)
    back = read_entries(path, source="op")
    assert [e.id for e in back] == ["acme/pipe:text_encoder", "acme/clip-base"]
    assert back[0] == replace(piped, source="op") and back[1] == replace(again, source="op")
    # and the registry sees it
    assert load_registry(path).get("acme/pipe:text_encoder") == replace(piped, source=str(path))


def test_add_entry_refuses_to_overwrite_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "anchors.json"
    path.write_text("{broken")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        add_entry(path, _entry("acme/clip-base"))
    assert path.read_text() == "{broken"


def _fp(**over: object) -> dict[str, object]:
    return {"hidden": 512, "layers": 12, "vocab": 49408, "positions": 77} | over


INVALID_ENTRIES = {
    "not an object": ["acme/clip-base"],
    "repo id without owner": _raw("clip-base"),
    "repo id with a path": _raw("acme/clip/base"),
    "repo id with ..": _raw("acme/clip..base"),
    "repo id traversal": _raw("../etc"),
    "repo id not a string": _raw(42),
    "unknown family": _raw(family="bert"),
    "short sha": _raw(sha="abc123"),
    "upper-case sha": _raw(sha=SHA.upper()),
    "41-hex sha": _raw(sha=SHA + "0"),
    "sha not a string": _raw(sha=123),
    "negative hidden": _raw(fingerprint=_fp(hidden=-512)),
    "zero layers": _raw(fingerprint=_fp(layers=0)),
    "bool layers": _raw(fingerprint=_fp(layers=True)),
    "bool vocab": _raw(fingerprint=_fp(vocab=False)),
    "float positions": _raw(fingerprint=_fp(positions=77.0)),
    "string hidden": _raw(fingerprint=_fp(hidden="512")),
    "missing positions": _raw(fingerprint={"hidden": 512, "layers": 12, "vocab": 49408}),
    "no fingerprint": {k: v for k, v in _raw().items() if k != "fingerprint"},
    "fingerprint a list": _raw(fingerprint=[512, 12, 49408, 77]),
    "bool heads": _raw(heads=True),
    "zero heads": _raw(heads=0),
    "subfolder with /": _raw(subfolder="text_encoder/sub"),
    "subfolder ..": _raw(subfolder=".."),
    "subfolder traversal": _raw(subfolder="../../etc"),
    "empty subfolder": _raw(subfolder=""),
    "subfolder not a string": _raw(subfolder=["text_encoder"]),
}


@pytest.mark.parametrize("raw", list(INVALID_ENTRIES.values()), ids=list(INVALID_ENTRIES))
def test_an_invalid_entry_is_a_config_error_naming_the_file(tmp_path: Path, raw: object) -> None:
    path = _registry_file(tmp_path / "anchors.json", [_raw("acme/fine"), raw])
    with pytest.raises(ConfigError, match=re.escape(f"{path} entry 2")):
        read_entries(path, source="op")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_registry(path)


@pytest.mark.parametrize("text", [
    "{not json",
    "",
    json.dumps({"version": 2, "entries": []}),
    json.dumps({"version": "1", "entries": []}),
    json.dumps({"entries": []}),
    json.dumps({"version": 1}),
    json.dumps({"version": 1, "entries": {"acme/clip-base": {}}}),
    json.dumps([_raw()]),
    "null",
], ids=["not json", "empty", "version 2", "version string", "no version", "no entries", "entries a dict",
       "a list", "null"])  # fmt: skip
def test_an_invalid_file_is_a_config_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "anchors.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        read_entries(path, source="op")


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "anchors.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        read_entries(path, source="op")
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
        read_entries(tmp_path, source="op")  # a folder


def test_valid_entries_read_with_their_fields(tmp_path: Path) -> None:
    path = _registry_file(tmp_path / "anchors.json", [
        _raw("acme/pipe", subfolder="text_encoder_2", sha=SHA, heads=None, note="x" * 500),
        {k: v for k, v in _raw("acme/bare").items() if k not in ("heads", "sha", "note")},
    ])
    pipe, bare = read_entries(path, source="op")
    assert pipe == AnchorEntry(repo_id="acme/pipe", subfolder="text_encoder_2", fingerprint=CLIP_B, heads=None,
                               sha=SHA, note="x" * 200, source="op")  # fmt: skip
    assert (bare.heads, bare.sha, bare.note, bare.subfolder) == (None, None, "", None)


# == selection by the weights, with tiny real text towers ===================================================

_TOKENIZER = SimpleNamespace(eos_token_id=99, pad_token_id=99)  # all a TextEncoder asks of a tokenizer


def _tower(seed: int = 0, *, family: str = "clip", hidden: int = 32, layers: int = 2, vocab: int = 100,
           projection: int | None = 16) -> TextEncoder:
    """A randomly initialised text tower (77 positions) in a TextEncoder."""
    torch.manual_seed(seed)
    spec = TowerSpec(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_layers=layers,
                     num_heads=2, max_positions=77)
    proj = nn.Linear(hidden, projection, bias=False) if projection else None
    return TextEncoder(family=family, tower=TextTower.random(spec, seed=seed), projection=proj,
                       tokenizer=_TOKENIZER, source=f"seed-{seed}", format="transformers-clip")


def _perturbed(encoder: TextEncoder, scale: float, *, seed: int = 1) -> TextEncoder:
    """A copy whose every tensor moved by exactly `scale` of its norm, in a random direction."""
    other = copy.copy(encoder)
    other.tower = copy.deepcopy(encoder.tower)
    other.projection = copy.deepcopy(encoder.projection)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (other.tower, other.projection):
            for tensor in (module.state_dict().values() if module is not None else ()):
                noise = torch.randn(tensor.shape, generator=generator)
                tensor.add_(noise * (scale * tensor.norm() / noise.norm()))
    return other


@pytest.fixture(scope="module")
def suspect() -> TextEncoder:
    return _tower(0)


def test_tower_fingerprint_of_a_loaded_tower(suspect: TextEncoder) -> None:
    assert tower_fingerprint(suspect) == Fingerprint(family="clip", hidden=32, layers=2, vocab=100, positions=77)
    assert tower_fingerprint(_tower(0, family="longclip", layers=3)) == Fingerprint("longclip", 32, 3, 100, 77)


def test_weight_distance_is_zero_for_the_same_weights(suspect: TextEncoder) -> None:
    assert weight_distance(suspect, suspect) == 0.0
    assert weight_distance(_perturbed(suspect, 0.0), suspect) == 0.0
    assert weight_distance(_tower(0), suspect) == 0.0  # the same seed: the same weights


@pytest.mark.parametrize("scale", [0.001, 0.01, 0.05])
def test_weight_distance_is_the_relative_size_of_a_perturbation(suspect: TextEncoder, scale: float) -> None:
    moved = _perturbed(suspect, scale)
    assert weight_distance(moved, suspect) == pytest.approx(scale, rel=1e-3)
    assert weight_distance(suspect, moved) == pytest.approx(scale, rel=0.05)  # relative to the other's norm


def test_weight_distance_grows_with_the_perturbation(suspect: TextEncoder) -> None:
    distances = [weight_distance(_perturbed(suspect, s), suspect) for s in (0.001, 0.01, 0.1, 0.5)]
    assert distances == sorted(distances) and distances[0] > 0


def test_weight_distance_counts_the_projection(suspect: TextEncoder) -> None:
    # only the projection moves: one tensor of many, so the median barely sees it, but it is compared
    moved = copy.copy(suspect)
    moved.projection = copy.deepcopy(suspect.projection)
    with torch.no_grad():
        moved.projection.weight.mul_(-1.0)
    alone = copy.copy(suspect)
    alone.tower = nn.Module()  # nothing else to compare: the projection alone decides
    moved_alone = copy.copy(moved)
    moved_alone.tower = alone.tower
    assert weight_distance(moved_alone, alone) == pytest.approx(2.0)
    assert weight_distance(moved, suspect) == 0.0


def test_weight_distance_ignores_tensors_whose_shape_differs(suspect: TextEncoder) -> None:
    # Another vocabulary and projection size, every shared tensor 2% away: only the shared tensors count.
    other = _tower(5, vocab=120, projection=8)
    moved = _perturbed(suspect, 0.02)
    state = {k: v for k, v in moved.tower.state_dict().items() if "token_embedding" not in k}
    missing, unexpected = other.tower.load_state_dict(state, strict=False)
    assert [k for k in missing if "token_embedding" not in k] == [] and unexpected == []
    assert other.tower.embeddings.token_embedding.weight.shape == (120, 32)
    assert weight_distance(other, suspect) == pytest.approx(0.02, rel=1e-3)
    assert weight_distance(suspect, other) == pytest.approx(0.02, rel=0.05)


def test_weight_distance_with_nothing_comparable_is_infinite(suspect: TextEncoder) -> None:
    wider = _tower(0, hidden=48, projection=None)
    assert weight_distance(wider, suspect) == float("inf")
    assert weight_distance(wider, suspect) > MAX_FINE_TUNE_DISTANCE


class _Loader:
    """load= for choose_anchor: serves prepared towers and records what it loaded."""

    def __init__(self, towers: dict[str, TextEncoder]) -> None:
        self.towers = towers
        self.loaded: list[str] = []

    def __call__(self, base: LocalBase) -> TextEncoder:
        self.loaded.append(base.id)
        return self.towers[base.id]


def _base(name: str, **over: object) -> LocalBase:
    return LocalBase(id=name, path=Path("/bases") / name, **over)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def bases(suspect: TextEncoder) -> dict[str, TextEncoder]:
    # near: a fine-tune's distance; nearish: a farther fine-tune; far: a stranger (another random init, about
    # 1.4 away, like a base pretrained from another seed), beyond MAX_FINE_TUNE_DISTANCE.
    return {"acme/near": _perturbed(suspect, 0.01, seed=11), "acme/nearish": _perturbed(suspect, 0.03, seed=12),
            "acme/far": _tower(13)}  # fmt: skip


def test_the_stranger_is_beyond_the_limit_and_the_fine_tunes_within(suspect, bases) -> None:
    assert weight_distance(suspect, bases["acme/far"]) > max(1.0, MAX_FINE_TUNE_DISTANCE)
    assert weight_distance(suspect, bases["acme/nearish"]) < MAX_FINE_TUNE_DISTANCE


def test_choose_anchor_picks_the_nearest_and_reports_the_runner_up(suspect, bases) -> None:
    load = _Loader(bases)
    candidates = [_base("acme/far"), _base("acme/nearish"),
                  _base("acme/near", sha=SHA, pin="first use", moved_to="f" * 40)]  # fmt: skip
    encoder, choice = choose_anchor(suspect, candidates, load=load, card_claim=None)
    assert encoder is bases["acme/near"]
    assert load.loaded == ["acme/far", "acme/nearish", "acme/near"]  # each loaded once
    assert (choice.how, choice.anchor, choice.sha, choice.pin, choice.moved_to) == \
        ("registry", "acme/near", SHA, "first use", "f" * 40)
    assert choice.distance == pytest.approx(0.01, abs=2e-4)
    assert choice.runner_up == "acme/nearish" and choice.runner_up_distance == pytest.approx(0.03, abs=1e-3)
    assert [c.anchor for c in choice.candidates] == ["acme/near", "acme/nearish", "acme/far"]
    distances = [c.distance for c in choice.candidates]
    assert distances == sorted(distances) and distances[2] > 1.0
    assert all(round(d, 5) == d for d in distances)
    assert choice.candidates[0].distance == choice.distance
    assert choice.finding is None and choice.reason is None and choice.card_claim is None


def test_choose_anchor_with_one_candidate_has_no_runner_up(suspect, bases) -> None:
    encoder, choice = choose_anchor(suspect, [_base("acme/nearish")], load=_Loader(bases), card_claim=None)
    assert encoder is bases["acme/nearish"] and choice.anchor == "acme/nearish"
    assert choice.runner_up is None and choice.runner_up_distance is None
    assert choice.candidates == [AnchorDistance("acme/nearish", choice.distance)]


def test_no_anchor_when_the_nearest_is_beyond_max_distance(suspect, bases) -> None:
    encoder, choice = choose_anchor(suspect, [_base("acme/far")], load=_Loader(bases), card_claim=None)
    assert encoder is None
    assert choice.how == "none" and choice.anchor is None and choice.distance is None
    far = choice.candidates[0].distance
    assert far > 1.0
    assert f"{far:.2f} away from the nearest registered base (acme/far)" in choice.reason
    assert f"beyond the {MAX_FINE_TUNE_DISTANCE:.2f}" in choice.reason
    assert [c.anchor for c in choice.candidates] == ["acme/far"]  # the measurement is still reported
    # the limit is a parameter: the same base passes a looser one, and a near base fails a tight one
    encoder, choice = choose_anchor(suspect, [_base("acme/far")], load=_Loader(bases), card_claim=None,
                                    max_distance=2.0)  # fmt: skip
    assert encoder is bases["acme/far"] and choice.how == "registry"
    encoder, choice = choose_anchor(suspect, [_base("acme/near")], load=_Loader(bases), card_claim=None,
                                    max_distance=0.001)  # fmt: skip
    assert encoder is None and choice.how == "none" and "beyond the 0.00 a fine-tune reaches" in choice.reason
    # only the nearest counts: a farther candidate beyond the limit does not block a near one
    encoder, choice = choose_anchor(suspect, [_base("acme/nearish"), _base("acme/near")], load=_Loader(bases),
                                    card_claim=None, max_distance=0.02)  # fmt: skip
    assert encoder is bases["acme/near"] and choice.runner_up == "acme/nearish"


def test_no_anchor_without_candidates(suspect) -> None:
    load = _Loader({})
    encoder, choice = choose_anchor(suspect, [], load=load, card_claim=None)
    assert encoder is None and load.loaded == []
    assert choice == AnchorChoice(how="none", reason="no registered base has this text tower's architecture")


def test_a_candidate_whose_loaded_fingerprint_differs_is_skipped(suspect, bases) -> None:
    deeper = _tower(0, layers=3)  # the registry said this shape; the copy says otherwise
    same_shapes_other_family = _perturbed(suspect, 0.0)
    same_shapes_other_family.family = "longclip"
    load = _Loader({**bases, "acme/deeper": deeper, "acme/long": same_shapes_other_family})
    encoder, choice = choose_anchor(suspect, [_base("acme/deeper"), _base("acme/long"), _base("acme/nearish")],
                                    load=load, card_claim=None)  # fmt: skip
    assert load.loaded == ["acme/deeper", "acme/long", "acme/nearish"]
    assert encoder is bases["acme/nearish"] and choice.anchor == "acme/nearish"
    assert [c.anchor for c in choice.candidates] == ["acme/nearish"] and choice.runner_up is None
    # only mismatched copies: no anchor, and the reason says they could not be used
    encoder, choice = choose_anchor(suspect, [_base("acme/deeper"), _base("acme/long")], load=load,
                                    card_claim=None)  # fmt: skip
    assert encoder is None and choice.how == "none" and choice.candidates == []
    assert choice.reason == "no registered base of this architecture could be loaded"


# -- the card's claim --------------------------------------------------------------------------------------

def test_no_finding_when_the_card_names_the_chosen_base(suspect, bases) -> None:
    _, choice = choose_anchor(suspect, [_base("acme/near"), _base("acme/far")], load=_Loader(bases),
                              card_claim="acme/near")  # fmt: skip
    assert choice.anchor == "acme/near" and choice.card_claim == "acme/near" and choice.finding is None


def test_no_finding_when_the_card_names_the_repo_of_the_chosen_subfolder(suspect, bases) -> None:
    load = _Loader({"acme/pipe:text_encoder": bases["acme/near"], "acme/far": bases["acme/far"]})
    _, choice = choose_anchor(suspect, [_base("acme/pipe:text_encoder", subfolder="text_encoder"),
                                        _base("acme/far")], load=load, card_claim="acme/pipe")  # fmt: skip
    assert choice.anchor == "acme/pipe:text_encoder" and choice.finding is None
    assert _card_finding("acme/pipe", "acme/pipe:text_encoder", 0.01, {}, ()) is None
    assert _card_finding("acme/pipe:text_encoder", "acme/pipe:text_encoder", 0.01, {}, ()) is None
    assert _card_finding(None, "acme/near", 0.01, {}, ()) is None and _card_finding("", None, None, {}, ()) is None


def test_a_finding_when_the_card_names_another_registered_base(suspect, bases) -> None:
    _, choice = choose_anchor(suspect, [_base("acme/near"), _base("acme/nearish")], load=_Loader(bases),
                              card_claim="acme/nearish")  # fmt: skip
    assert choice.anchor == "acme/near"  # the card decides nothing
    assert choice.finding is not None
    assert "acme/nearish" in choice.finding and "nearest to acme/near " in choice.finding
    assert f"{choice.runner_up_distance:.3f} from acme/nearish" in choice.finding
    assert f"(distance {choice.distance:.3f})" in choice.finding
    assert "not a trusted base" not in choice.finding


def test_a_finding_when_the_card_names_the_repo_of_another_registered_subfolder() -> None:
    distances = {"acme/near": 0.01, "acme/pipe:text_encoder_2": 0.2}
    finding = _card_finding("acme/pipe", "acme/near", 0.01, distances, ())
    assert finding is not None and "0.200 from acme/pipe" in finding and "nearest to acme/near" in finding


@pytest.mark.parametrize("claim", ["acme/unregistered", "acme/suspect"])
def test_a_finding_when_the_card_names_an_unregistered_repo_or_the_suspect(suspect, bases, claim: str) -> None:
    _, choice = choose_anchor(suspect, [_base("acme/near"), _base("acme/nearish")], load=_Loader(bases),
                              card_claim=claim)  # fmt: skip
    assert choice.anchor == "acme/near"
    assert choice.finding == (f"the card names {claim} as the base model, which is not a trusted base; the "
                              f"weights are nearest to acme/near (distance {choice.distance:.3f})")  # fmt: skip


def test_findings_without_an_anchor(suspect, bases) -> None:
    # the card names the base the weights are too far from
    _, choice = choose_anchor(suspect, [_base("acme/far")], load=_Loader(bases), card_claim="acme/far")
    assert choice.how == "none" and choice.finding is not None
    assert choice.finding == (f"the card names acme/far as the base model, but the weights are "
                              f"{choice.candidates[0].distance:.2f} away from it: too far for a fine-tune of it")
    # the card names an unregistered repo, and there is nothing to compare with
    _, choice = choose_anchor(suspect, [], load=_Loader({}), card_claim="acme/whatever")
    assert choice.finding == "the card names acme/whatever as the base model, which is not a trusted base"
    _, choice = choose_anchor(suspect, [], load=_Loader({}), card_claim=None)
    assert choice.finding is None


def test_explicit_choice() -> None:
    choice = explicit_choice("/models/my-base", card_claim="acme/clip-base")
    assert (choice.how, choice.anchor, choice.card_claim) == ("explicit", "/models/my-base", "acme/clip-base")
    assert "--anchor" in choice.reason and choice.finding is None and choice.distance is None
    assert choice.candidates == []


# == the zoo's bases held locally (bot/anchors/local.py) ====================================================

def _held(cache: Path, recipe: Recipe, *, finished: bool = True, directory: Path | None = None) -> Path:
    """A zoo model directory as bot/zoo/build.py leaves it; without metrics.json it is an unfinished build."""
    path = directory if directory is not None else model_dir(cache, recipe)
    path.mkdir(parents=True)
    (path / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))
    (path / "config.json").write_text("{}")
    if finished:
        (path / "metrics.json").write_text(json.dumps({"kind": recipe.kind}))
    return path


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    path = tmp_path / "anchor-cache"
    path.mkdir()
    return path


def test_zoo_bases_are_finished_bases_by_hub_name(cache: Path) -> None:
    clip = _held(cache, base_recipe("clip"))
    siglip1 = _held(cache, base_recipe("siglip", seed=1))
    assert zoo_bases(cache) == {"clip-audit-zoo/clip-base-s0": clip, "clip-audit-zoo/siglip-base-s1": siglip1}


def test_zoo_bases_is_empty_without_a_zoo(tmp_path: Path) -> None:
    assert zoo_bases(tmp_path / "nowhere") == {}
    assert zoo_bases(tmp_path) == {}


def test_unfinished_builds_are_ignored(cache: Path) -> None:
    _held(cache, base_recipe("clip"), finished=False)
    longclip = _held(cache, base_recipe("longclip"))
    assert zoo_bases(cache) == {"clip-audit-zoo/longclip-base-s0": longclip}


def test_derived_models_are_never_bases(cache: Path) -> None:
    base = base_recipe("clip")
    for kind, seed in (("text-on-text", 1), ("text-on-pair", 1), ("benign", 1)):
        recipe = derived(base, kind, seed)
        # Even a derived model that sorts first, and whose base is the registered one, is not a base.
        _held(cache, recipe, directory=cache / "zoo" / f"0-{recipe.name}-{recipe.key}")
    assert zoo_bases(cache) == {}
    assert local_candidates(load_registry(), ZOO_CLIP, cache) == []

    held = _held(cache, base)
    assert zoo_bases(cache) == {"clip-audit-zoo/clip-base-s0": held}


def test_the_first_build_in_directory_order_wins(cache: Path) -> None:
    # Two bases with one Hub name (same family and seed, different step counts): different cache keys.
    short, long = base_recipe("clip", steps=100), base_recipe("clip", steps=400)
    assert short.key != long.key
    first = min(model_dir(cache, short), model_dir(cache, long))
    _held(cache, long)
    _held(cache, short)
    assert zoo_bases(cache) == {"clip-audit-zoo/clip-base-s0": first}


def test_a_build_still_in_its_partial_folder_is_not_a_base(cache: Path) -> None:
    recipe = base_recipe("clip")
    _held(cache, recipe, directory=model_dir(cache, recipe).with_name(model_dir(cache, recipe).name + ".partial"))
    assert zoo_bases(cache) == {}


def test_local_candidates_are_registered_held_bases_with_the_fingerprint(cache: Path) -> None:
    clip = _held(cache, base_recipe("clip"))
    _held(cache, base_recipe("clip", seed=1))  # held, same shapes, but not registered
    _held(cache, base_recipe("siglip"))        # registered, another fingerprint
    registry = load_registry()
    assert local_candidates(registry, ZOO_CLIP, cache) == [LocalBase(id="clip-audit-zoo/clip-base-s0", path=clip)]
    assert local_candidates(registry, None, cache) == []
    assert local_candidates(registry, replace(ZOO_CLIP, family="longclip"), cache) == []
    assert local_candidates(registry, replace(ZOO_CLIP, layers=5), cache) == []
    assert local_candidates(registry, ZOO_CLIP, cache.parent / "empty") == []

    # an operator entry for the seed-1 base makes it a candidate too, in registry order
    operator = _registry_file(cache.parent / "anchors.json", [
        _raw("clip-audit-zoo/clip-base-s1", fingerprint=_fp(hidden=128, layers=4))])
    found = local_candidates(load_registry(operator), ZOO_CLIP, cache)
    assert [c.id for c in found] == ["clip-audit-zoo/clip-base-s0", "clip-audit-zoo/clip-base-s1"]
    assert all(c.sha is None and c.pin is None and c.subfolder is None for c in found)


def test_local_candidates_skip_subfolder_entries(cache: Path) -> None:
    _held(cache, base_recipe("clip"))
    registry = Registry((_entry("clip-audit-zoo/clip-base-s0", ZOO_CLIP, subfolder="text_encoder"),))
    assert local_candidates(registry, ZOO_CLIP, cache) == []


# == the record =============================================================================================

def _choice() -> AnchorChoice:
    return AnchorChoice(how="registry", anchor="openai/clip-vit-base-patch32", sha=SHA, pin="registry",
                        moved_to=None, distance=0.0123, runner_up="openai/clip-vit-base-patch16",
                        runner_up_distance=1.234,
                        candidates=[AnchorDistance("openai/clip-vit-base-patch32", 0.0123),
                                    AnchorDistance("openai/clip-vit-base-patch16", 1.234)],
                        card_claim="acme/other", finding="the card names acme/other ...")  # fmt: skip


@pytest.mark.parametrize("choice", [
    _choice(),
    explicit_choice("/models/base", card_claim=None),
    AnchorChoice(how="none", reason="no registered base has this text tower's architecture", card_claim="x/y",
                 finding="the card names x/y as the base model, which is not a trusted base"),
    None,
], ids=["registry", "explicit", "none", "absent"])  # fmt: skip
def test_anchor_choice_round_trips_through_the_record(choice: AnchorChoice | None) -> None:
    record = replace(make_record(Verdict.BACKDOOR), anchor_choice=choice)
    again = ScanRecord.from_json(record.to_json())
    assert again == record and again.anchor_choice == choice
    if choice is not None:
        assert all(isinstance(c, AnchorDistance) for c in again.anchor_choice.candidates)


def test_a_chosen_anchor_round_trips(suspect, bases) -> None:
    _, choice = choose_anchor(suspect, [_base("acme/near"), _base("acme/nearish")], load=_Loader(bases),
                              card_claim="acme/nearish")  # fmt: skip
    record = replace(make_record(Verdict.CLEAN), anchor=choice.anchor, anchor_choice=choice)
    assert ScanRecord.from_json(record.to_json()).anchor_choice == choice


def test_a_v2_record_without_anchor_choice_still_reads() -> None:
    data = json.loads(make_record(Verdict.CLEAN).to_json())
    data["record_version"] = 2
    del data["anchor_choice"]
    record = ScanRecord.from_dict(data)
    assert record.record_version == 2 and record.anchor_choice is None
    assert record.anchor == "openai/clip-vit-base-patch32"
    # and an explicit null reads the same
    assert ScanRecord.from_dict(data | {"anchor_choice": None}).anchor_choice is None


def test_card_claims_are_read_as_the_hub_reads_repo_ids_case_insensitively() -> None:
    assert _card_finding("OpenAI/CLIP-ViT-Base-Patch32", "openai/clip-vit-base-patch32", 0.01, {}, ()) is None


def test_a_card_naming_a_trusted_base_of_another_shape_is_told_apart_from_an_untrusted_one() -> None:
    registered = ("openai/clip-vit-base-patch32", "openai/clip-vit-large-patch14")
    other = _card_finding("openai/clip-vit-large-patch14", "openai/clip-vit-base-patch32", 0.02, {}, registered)
    assert other is not None and "another architecture" in other and "not a trusted base" not in other
    assert "nearest to openai/clip-vit-base-patch32" in other
    stranger = _card_finding("mallory/twin", "openai/clip-vit-base-patch32", 0.02, {}, registered)
    assert stranger is not None and "not a trusted base" in stranger


def test_a_null_note_reads_as_no_note_and_a_non_string_note_is_refused(tmp_path: Path) -> None:
    entry = {"repo_id": "acme/base", "family": "clip", "fingerprint": {"hidden": 8, "layers": 1, "vocab": 10,
             "positions": 77}, "note": None}  # fmt: skip
    path = tmp_path / "ops.json"
    path.write_text(json.dumps({"version": 1, "entries": [entry]}))
    assert read_entries(path, source="ops")[0].note == ""
    path.write_text(json.dumps({"version": 1, "entries": [{**entry, "note": 3}]}))
    with pytest.raises(ConfigError, match="note"):
        read_entries(path, source="ops")


def test_get_takes_exact_ids_only() -> None:
    registry = load_registry()
    assert registry.get("stabilityai/stable-diffusion-xl-base-1.0") is None
    assert registry.get("stabilityai/stable-diffusion-xl-base-1.0:text_encoder_2") is not None
