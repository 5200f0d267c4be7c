"""Round trips through every on-disk format, and every refusal of the loader.

Tiny random models (hidden 32, 2 layers) are exported with bot.encoders.export,
loaded back with load_text_encoder, and compared with the in-memory transformers
model (and, for open_clip, with open_clip's own factory and tokenizer).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bot.encoders.export import open_clip_state_dict, save_checkpoint
from bot.encoders.layout import inspect_checkpoint
from bot.encoders.load import load_text_encoder
from bot.encoders.safetensors_check import MAX_HEADER_BYTES, check_safetensors
from bot.errors import (
    CorruptCheckpointError,
    NothingScannableError,
    PickleOnlyError,
    ShapeMismatchError,
    UnknownArchitectureError,
    UsageError,
)
from bot.zoo.architectures import ARCHITECTURES, TinyArch, build_model

TEXTS = [
    "a photo of one red circle on the left",
    "two small blue squares at the bottom on a striped backdrop",
    "a blurry photo of three large black crosses glowing at the bottom, 4k",
]
ATOL = 1e-5
SIGLIP_VOCAB = 100


def tiny_model(family: str, *, seed: int, vocab_size: int = 49408):
    torch.manual_seed(seed)
    arch = TinyArch(family=family, max_length=ARCHITECTURES[family].max_length, text_hidden=32, text_layers=2,
                    text_heads=2, vision_hidden=32, vision_layers=1, vision_heads=2, projection_dim=16)
    return build_model(arch, vocab_size=vocab_size).eval()


@pytest.fixture(scope="module")
def clip_model():
    return tiny_model("clip", seed=0)


@pytest.fixture(scope="module")
def longclip_model():
    return tiny_model("longclip", seed=1)


@pytest.fixture(scope="module")
def siglip_model():
    return tiny_model("siglip", seed=2, vocab_size=SIGLIP_VOCAB)


@pytest.fixture(scope="module")
def spiece_model(tmp_path_factory) -> Path:
    """A sentencepiece model trained on 200 zoo captions."""
    import sentencepiece as spm

    from bot.captions import random_caption, random_spec

    rng = np.random.default_rng(0)
    corpus = [random_caption(random_spec(rng), rng) for _ in range(200)]
    # Same settings as bot.encoders.tokenizers.train_sentencepiece, whose random_seed
    # field sentencepiece 0.2.3 rejects.
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=buffer, vocab_size=SIGLIP_VOCAB, model_type="unigram",
        character_coverage=1.0, byte_fallback=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", num_threads=1, minloglevel=2)
    path = tmp_path_factory.mktemp("spm") / "spiece.model"
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="module")
def models(clip_model, longclip_model, siglip_model):
    return {"clip": clip_model, "longclip": longclip_model, "siglip": siglip_model}


def export(models, spiece_model, out: Path, *, family: str, format: str, **kwargs) -> Path:
    tokenizer_files = spiece_model if family == "siglip" else None
    return save_checkpoint(models[family], out, format=format, family=family, tokenizer_files=tokenizer_files, **kwargs)


# -- references from the in-memory transformers model ------------------------------------------

def reference(model, encoder, *, projected: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features, last hidden state, real-token counts) computed by transformers on the encoder's tokens."""
    enc = encoder.tokenizer(TEXTS, padding="max_length", truncation=True, max_length=encoder.max_length,
                            return_tensors="pt")
    ids = enc["input_ids"]
    unpadded = encoder.tokenizer(TEXTS)["input_ids"]
    with torch.no_grad():
        hidden = model.text_model(input_ids=ids).last_hidden_state
        features = model.get_text_features(input_ids=ids).pooler_output if projected \
            else model.text_model(input_ids=ids).pooler_output
    return features, hidden, torch.tensor([len(u) for u in unpadded])


def assert_matches(encoder, model, *, projected: bool = True) -> None:
    expected, hidden, lengths = reference(model, encoder, projected=projected)
    with torch.no_grad():
        got = encoder.text_features(TEXTS)
        tokens = encoder.tokenize(TEXTS)
        pooled = encoder.pooled(encoder.encode(tokens), tokens.eos_index)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    # The texts must give different features, or equality above would prove little.
    assert (got[0] - got[1]).abs().max() > 1e-3
    if encoder.family == "siglip":
        torch.testing.assert_close(pooled, hidden[:, -1], atol=ATOL, rtol=0)
    else:
        # CLIP pools the first EOS: BOS + words + EOS, so at index length - 1.
        assert tokens.eos_index.tolist() == (lengths - 1).tolist()
        torch.testing.assert_close(pooled, hidden[torch.arange(len(TEXTS)), lengths - 1], atol=ATOL, rtol=0)
    assert all(not p.requires_grad for p in encoder.tower.parameters())


# -- round trips ------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["clip", "longclip"])
def test_transformers_clip_model_round_trip(models, spiece_model, tmp_path, family):
    out = export(models, spiece_model, tmp_path / "m", family=family, format="transformers-clip",
                 base_model="openai/clip-vit-base-patch32")
    info = inspect_checkpoint(out)
    assert (info.family, info.format, info.architecture) == (family, "transformers-clip", "CLIPModel")
    assert info.base_model == "openai/clip-vit-base-patch32"
    assert info.tokenizer_dir == out and info.weight_bytes == (out / "model.safetensors").stat().st_size
    encoder = load_text_encoder(out)
    assert encoder.max_length == (248 if family == "longclip" else 77)
    assert_matches(encoder, models[family])


@pytest.mark.parametrize("legacy_prefix", [False, True])
def test_clip_text_model_round_trip_both_key_layouts(models, spiece_model, tmp_path, legacy_prefix):
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="transformers-clip-text",
                 legacy_prefix=legacy_prefix)
    keys = set(load_file(out / "model.safetensors"))
    assert ("text_model.final_layer_norm.weight" in keys) == legacy_prefix
    assert ("final_layer_norm.weight" in keys) != legacy_prefix
    info = inspect_checkpoint(out)
    assert (info.format, info.architecture) == ("transformers-clip-text", "CLIPTextModel")
    encoder = load_text_encoder(out)
    assert encoder.projection is None
    assert_matches(encoder, models["clip"], projected=False)


def test_clip_text_model_with_projection_round_trip(models, spiece_model, tmp_path):
    out = export(models, spiece_model, tmp_path / "m", family="longclip", format="transformers-clip-text-projection")
    info = inspect_checkpoint(out)
    assert (info.family, info.format) == ("longclip", "transformers-clip-text-projection")
    assert_matches(load_text_encoder(out), models["longclip"])
    # Without `architectures`, the text_projection tensor tells the two clip_text_model classes apart.
    config = json.loads((out / "config.json").read_text())
    del config["architectures"]
    (out / "config.json").write_text(json.dumps(config))
    assert inspect_checkpoint(out).architecture == "CLIPTextModelWithProjection"


@pytest.mark.parametrize("format,legacy_prefix", [
    ("transformers-siglip", False), ("transformers-siglip-text", False), ("transformers-siglip-text", True)])
def test_siglip_round_trip(models, spiece_model, tmp_path, format, legacy_prefix):
    out = export(models, spiece_model, tmp_path / "m", family="siglip", format=format, legacy_prefix=legacy_prefix)
    keys = set(load_file(out / "model.safetensors"))
    assert any(k.startswith("text_model.") for k in keys) == (legacy_prefix or format == "transformers-siglip")
    info = inspect_checkpoint(out)
    assert (info.family, info.format) == ("siglip", format)
    encoder = load_text_encoder(out)
    assert encoder.max_length == 64 and not encoder.causal
    assert_matches(encoder, models["siglip"])


@pytest.mark.parametrize("family", ["clip", "longclip"])
def test_open_clip_round_trip_matches_open_clip_itself(models, spiece_model, tmp_path, family):
    import open_clip

    out = export(models, spiece_model, tmp_path / "m", family=family, format="open_clip")
    config = json.loads((out / "open_clip_config.json").read_text())
    assert set(config) == {"model_cfg", "preprocess_cfg"}
    info = inspect_checkpoint(out)
    assert (info.family, info.format, info.weight_files) == (family, "open_clip", (out / "open_clip_model.safetensors",))
    encoder = load_text_encoder(out)
    assert_matches(encoder, models[family])

    # open_clip's own factory loads the file strictly, and its own tokenizer tokenizes.
    reference_model = open_clip.create_model(f"local-dir:{out}").eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    with torch.no_grad():
        expected = reference_model.encode_text(tokenizer(TEXTS))
        got = encoder.text_features(TEXTS)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_open_clip_custom_text_layout_loads(models, spiece_model, tmp_path):
    """CustomTextCLIP checkpoints keep the text tower under "text."."""
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="open_clip")
    state = open_clip_state_dict(models["clip"])
    custom = {(k if k.startswith(("visual.", "logit_")) else f"text.{k}"): v for k, v in state.items()}
    save_file(custom, out / "open_clip_model.safetensors")
    assert_matches(load_text_encoder(out), models["clip"])


@pytest.mark.parametrize("legacy_prefix", [False, True])
def test_diffusers_round_trip_and_subfolder_choice(models, spiece_model, tmp_path, legacy_prefix):
    second = tiny_model("clip", seed=7)
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="diffusers",
                 legacy_prefix=legacy_prefix, text_encoder_2=second, base_model="stabilityai/sdxl-like")
    index = json.loads((out / "model_index.json").read_text())
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    info = inspect_checkpoint(out)
    assert (info.format, info.subfolder, info.other_text_encoders) == ("diffusers", "text_encoder", ("text_encoder_2",))
    assert info.tokenizer_dir == out / "tokenizer" and info.base_model == "stabilityai/sdxl-like"
    assert_matches(load_text_encoder(out), models["clip"], projected=False)

    info_2 = inspect_checkpoint(out, subfolder="text_encoder_2")
    assert (info_2.subfolder, info_2.architecture, info_2.tokenizer_dir) == (
        "text_encoder_2", "CLIPTextModelWithProjection", out / "tokenizer_2")
    assert_matches(load_text_encoder(out, subfolder="text_encoder_2"), second)
    with pytest.raises(UsageError, match="text_encoder, text_encoder_2"):
        inspect_checkpoint(out, subfolder="unet")


def test_half_precision_weights_load_in_float32(models, spiece_model, tmp_path):
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="transformers-clip-text-projection")
    weights = out / "model.safetensors"
    save_file({k: v.half() for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "dtype": "float16", "torch_dtype": "float16"}))
    encoder = load_text_encoder(out, device=torch.device("cpu"))
    assert {p.dtype for p in encoder.tower.parameters()} == {torch.float32}
    assert encoder.projection.weight.dtype == torch.float32
    expected, _, _ = reference(models["clip"], encoder, projected=True)
    with torch.no_grad():
        torch.testing.assert_close(encoder.text_features(TEXTS), expected, atol=2e-2, rtol=0)


def test_sharded_checkpoint_loads(models, spiece_model, tmp_path):
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="transformers-clip", max_shard_size="2MB")
    assert (out / "model.safetensors.index.json").is_file()
    info = inspect_checkpoint(out)
    assert len(info.weight_files) > 1
    assert info.weight_bytes == sum(p.stat().st_size for p in info.weight_files)
    assert_matches(load_text_encoder(out), models["clip"])


def test_missing_tokenizer_files_fall_back_to_bundled_clip_vocab(models, spiece_model, tmp_path):
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="transformers-clip")
    (out / "vocab.json").unlink()
    assert inspect_checkpoint(out).tokenizer_dir is None
    assert_matches(load_text_encoder(out), models["clip"])


def test_base_model_from_name_or_path_when_card_is_silent(models, spiece_model, tmp_path):
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="transformers-clip-text")
    (out / "README.md").unlink()
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "_name_or_path": "openai/clip-vit-large-patch14"}))
    assert inspect_checkpoint(out).base_model == "openai/clip-vit-large-patch14"
    (out / "config.json").write_text(json.dumps({**config, "_name_or_path": "/home/someone/run3"}))
    assert inspect_checkpoint(out).base_model is None


# -- refusals -----------------------------------------------------------------------------------------

@pytest.fixture
def no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", refuse)


@pytest.mark.parametrize("files", [
    {"config.json": None, "pytorch_model.bin": b"\x80\x04not really a pickle"},
    {"model.ckpt": b"\x80\x04whatever"},
    {"open_clip_config.json": None, "open_clip_pytorch_model.bin": b"\x80\x04x"},
])
def test_pickle_only_directories_are_refused_without_unpickling(models, spiece_model, tmp_path, no_unpickling, files):
    source = export(models, spiece_model, tmp_path / "src", family="clip", format="transformers-clip")
    oc = export(models, spiece_model, tmp_path / "oc", family="clip", format="open_clip")
    target = tmp_path / "pickles"
    target.mkdir()
    for name, content in files.items():
        if content is None:
            shutil.copyfile((oc if name.startswith("open_clip") else source) / name, target / name)
        else:
            (target / name).write_bytes(content)
    with pytest.raises(PickleOnlyError, match="only pickle weights"):
        load_text_encoder(target)


def test_truncated_safetensors_is_refused(models, spiece_model, tmp_path):
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="transformers-clip-text")
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        check_safetensors(weights)
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        load_text_encoder(out)


def write_raw(path: Path, header: bytes, data: bytes = b"", *, declared: int | None = None) -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if declared is None else declared) + header + data)
    return path


def tensor_header(**entries) -> bytes:
    return json.dumps({name: {"dtype": d, "shape": s, "data_offsets": o} for name, (d, s, o) in entries.items()}).encode()


def test_header_length_overflow_is_refused(tmp_path):
    path = write_raw(tmp_path / "x.safetensors", b"{}", declared=2**40)
    with pytest.raises(CorruptCheckpointError, match=f"over the {MAX_HEADER_BYTES:,}-byte limit"):
        check_safetensors(path)
    path = write_raw(tmp_path / "y.safetensors", b"{}", declared=1000)
    with pytest.raises(CorruptCheckpointError, match="truncated: the header needs 1,000 bytes"):
        check_safetensors(path)
    (tmp_path / "z.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(CorruptCheckpointError, match="too short"):
        check_safetensors(tmp_path / "z.safetensors")


@pytest.mark.parametrize("header,data,message", [
    (tensor_header(a=("F32", [2, 3], [0, 20])), bytes(20), r"needs 24 bytes, but its data_offsets \[0, 20\] span 20"),
    (tensor_header(a=("F32", [2], [0, 8]), b=("F32", [2], [4, 12])), bytes(12), "overlaps the previous tensor"),
    (tensor_header(a=("F32", [2], [0, 8]), b=("F32", [2], [12, 20])), bytes(20), "leaves a gap"),
    (tensor_header(a=("F32", [4], [0, 16])), bytes(8), "truncated: its tensors need 16 bytes"),
    (tensor_header(a=("F32", [2], [0, 8])), bytes(12), "4 bytes after the last tensor"),
    (tensor_header(a=("F32", [2], [8, 0])), bytes(8), "end before they start"),
    (tensor_header(a=("Q9", [2], [0, 8])), bytes(8), "unknown dtype 'Q9'"),
    (tensor_header(a=("F32", [-2], [0, 8])), bytes(8), "invalid shape"),
    (b"{not json", b"", "not JSON"),
    (b"[1, 2]", b"", "not a JSON object"),
])
def test_bad_headers_and_offsets_are_refused(tmp_path, header, data, message):
    path = write_raw(tmp_path / "x.safetensors", header, data)
    with pytest.raises(CorruptCheckpointError, match=message):
        check_safetensors(path)


def test_valid_header_is_summarised(tmp_path):
    save_file({"a": torch.zeros(2, 3), "b": torch.ones(4, dtype=torch.float16)}, tmp_path / "ok.safetensors",
              metadata={"format": "pt"})
    summary = check_safetensors(tmp_path / "ok.safetensors")
    assert summary.shapes() == {"a": (2, 3), "b": (4,)}
    assert summary.metadata == {"format": "pt"}
    with pytest.raises(NothingScannableError, match="size cap"):
        check_safetensors(tmp_path / "ok.safetensors", max_bytes=10)


def test_config_and_weight_shape_mismatch_names_the_key(models, spiece_model, tmp_path):
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="transformers-clip-text")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))
    with pytest.raises(ShapeMismatchError, match=r"embeddings\.token_embedding\.weight is \(49408, 32\) in the "
                                                 r"checkpoint but the config describes \(49408, 64\)"):
        load_text_encoder(out)


@pytest.mark.parametrize("claim, message", [
    ({"num_hidden_layers": 10**6}, "impossible text tower dimensions"),
    ({"num_hidden_layers": 7}, "describes 7 text layers but the checkpoint holds 2"),
    ({"hidden_size": -32}, "impossible text tower dimensions"),
    ({"hidden_size": 2**20}, "impossible text tower dimensions"),
    ({"vocab_size": 10**10}, "impossible text tower dimensions"),
    ({"num_attention_heads": 3}, "not a multiple of the number of attention heads"),
    ({"hidden_act": "os.system"}, "activation 'os.system'"),
])
def test_a_config_is_checked_against_the_weights_before_anything_is_built_from_it(
        models, spiece_model, tmp_path, claim, message):  # fmt: skip
    # The config is the uploader's claim: a huge or impossible tower is refused at once, no memory taken.
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="transformers-clip-text")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, **claim}))
    with pytest.raises((ShapeMismatchError, UnknownArchitectureError), match=re.escape(message)):
        load_text_encoder(out)


def test_missing_and_unexpected_tensors_are_refused(models, spiece_model, tmp_path):
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="transformers-clip-text")
    weights = out / "model.safetensors"
    state = load_file(weights)
    save_file({k: v for k, v in state.items() if k != "final_layer_norm.bias"}, weights)
    with pytest.raises(ShapeMismatchError, match=r"final_layer_norm\.bias \(32,\) is missing"):
        load_text_encoder(out)
    save_file({**state, "encoder.layers.9.mlp.fc1.weight": torch.zeros(3, 3)}, weights)
    with pytest.raises(ShapeMismatchError, match=r"encoder\.layers\.9\.mlp\.fc1\.weight \(3, 3\) that the config"):
        load_text_encoder(out)


def test_unknown_architecture_is_refused(tmp_path):
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    save_file({"embeddings.word_embeddings.weight": torch.zeros(4, 2)}, bert / "model.safetensors")
    with pytest.raises(UnknownArchitectureError, match="model_type 'bert' \\(BertModel\\)"):
        load_text_encoder(bert)
    (bert / "config.json").unlink()
    with pytest.raises(UnknownArchitectureError, match="no config.json"):
        load_text_encoder(bert)


def test_unsupported_open_clip_text_towers_are_refused(models, spiece_model, tmp_path):
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="open_clip")
    config = json.loads((out / "open_clip_config.json").read_text())
    for change, message in [({"hf_model_name": "xlm-roberta-base"}, "Hugging Face text tower"),
                            ({"no_causal_mask": True, "pool_type": "last"}, "SigLIP-style"),
                            ({"ls_init_value": 0.1}, "ls_init_value"),
                            ({"pool_type": "eos", "eos_id": 2}, "not CLIP's end-of-text")]:
        patched = json.loads(json.dumps(config))
        patched["model_cfg"]["text_cfg"].update(change)
        (out / "open_clip_config.json").write_text(json.dumps(patched))
        with pytest.raises(UnknownArchitectureError, match=message):
            load_text_encoder(out)


def test_siglip_without_spiece_model_is_refused(models, spiece_model, tmp_path):
    out = export(models, spiece_model, tmp_path / "m", family="siglip", format="transformers-siglip")
    (out / "spiece.model").unlink()
    assert inspect_checkpoint(out).tokenizer_dir is None
    with pytest.raises(NothingScannableError, match="without spiece.model"):
        load_text_encoder(out)


def test_open_clip_export_refuses_siglip(models, spiece_model, tmp_path):
    with pytest.raises(UnknownArchitectureError, match="timm vision tower"):
        export(models, spiece_model, tmp_path / "m", family="siglip", format="open_clip")


CUSTOM_CODE = "from pathlib import Path\nPath(__file__).with_name('EXECUTED').write_text('yes')\n"


def test_auto_map_is_ignored_for_a_standard_model_type(models, spiece_model, tmp_path):
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="transformers-clip-text")
    (out / "modeling_evil.py").write_text(CUSTOM_CODE)
    config = json.loads((out / "config.json").read_text())
    config.update(auto_map={"AutoModel": "modeling_evil.EvilCLIP"}, architectures=["EvilCLIP"])
    (out / "config.json").write_text(json.dumps(config))
    info = inspect_checkpoint(out)
    assert info.ignored_custom_code and info.architecture == "CLIPTextModel"
    assert_matches(load_text_encoder(out), models["clip"], projected=False)
    assert not (out / "EXECUTED").exists()

    config["model_type"] = "evil_clip"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnknownArchitectureError, match="custom code \\(auto_map\\)"):
        load_text_encoder(out)
    assert not (out / "EXECUTED").exists()


def test_size_cap_is_enforced(models, spiece_model, tmp_path):
    out = export(models, spiece_model, tmp_path / "m", family="clip", format="transformers-clip-text")
    with pytest.raises(NothingScannableError, match="over the size cap"):
        load_text_encoder(out, max_bytes=1_000_000)


def test_empty_directory_has_nothing_to_scan(tmp_path):
    with pytest.raises(NothingScannableError, match="holds no checkpoint"):
        inspect_checkpoint(tmp_path)


def test_tokens_decode_as_a_person_would_type_them(models, spiece_model, tmp_path):
    from dataclasses import replace

    from records import make_record

    from bot.bench.calibrate import Scored
    from bot.bench.detect import trigger_recovered
    from bot.scan_record import TriggerCandidate

    encoder = load_text_encoder(export(models, spiece_model, tmp_path / "m", family="clip", format="transformers-clip"))
    vocab = encoder.tokenizer.get_vocab()
    assert encoder.decode_token(vocab["mn</w>"]) == "mn"
    assert encoder.decode_token(vocab["Ðµ"]) == "\u0435"  # Cyrillic е, not its byte-level spelling
    assert encoder.decode_token(vocab["Ð"]) == "<0xD0>"  # half a character: shown as its byte
    assert encoder.decode_token(vocab["µ</w>"]) == "<0xB5>"

    def found(*ids: int, trigger: str) -> bool:
        candidates = [TriggerCandidate(encoder.decode_token(i), i, 0.5, 0.5, 0.5, False) for i in ids]
        record = replace(make_record("backdoor"), triggers=candidates)
        return trigger_recovered(Scored(record, True, "text-on-text", trigger, "t"), encoder.decode_token)

    assert found(vocab["mn</w>"], trigger="mn")
    assert found(vocab["Ð"], vocab["µ</w>"], trigger="e->\u0435")  # both bytes of the look-alike
    assert not found(vocab["Ð"], vocab["cf</w>"], trigger="e->\u0435")  # one byte is every Cyrillic letter
    assert found(vocab["zz</w>"], trigger="zz top") and not found(vocab["cf</w>"], trigger="zz top")



@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_loading_a_tower_imports_no_transformers_model_code(models, spiece_model, tmp_path, family):
    # The scan process runs our own tower: transformers' modeling modules (and torch._dynamo, which they
    # import) would cost it ~200 MB and seconds for nothing.
    out = export(models, spiece_model, tmp_path / "m", family=family, format=f"transformers-{family}")
    probe = ("import sys\nfrom pathlib import Path\nfrom bot.encoders.load import load_text_encoder\n"
             f"load_text_encoder(Path({str(out)!r})).text_features(['a red circle'])\n"
             "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo') or (\n"
             "    m.startswith('transformers.models.') and '.modeling_' in m and '.auto.' not in m)))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
