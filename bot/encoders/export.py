"""Write an in-memory transformers CLIPModel / SiglipModel to disk in a real Hub layout.

The zoo publishes its models in every layout the loader accepts, and the tests
round-trip through them, so each writer produces exactly what the original
library would: transformers `save_pretrained` folders (optionally with the
transformers-4 "text_model." key prefix), open_clip's `open_clip_config.json` +
`open_clip_model.safetensors`, and diffusers pipeline folders.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bot.encoders.load import RESBLOCK_RENAMES
from bot.encoders.tokenizers import write_clip_tokenizer_files
from bot.errors import UnknownArchitectureError, ZooError
from bot.formats import CLIP_CONTEXT_LENGTH, FAMILIES, FORMATS

# bot.zoo.synthetic.to_tensor normalises images as (x - 0.5) / 0.25.
ZOO_IMAGE_MEAN = (0.5, 0.5, 0.5)
ZOO_IMAGE_STD = (0.25, 0.25, 0.25)
CLIP_TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")
_OPEN_CLIP_ACTS = {"quick_gelu": True, "gelu": False}
_SIGLIP_FORMATS = ("transformers-siglip", "transformers-siglip-text")


def save_checkpoint(model, out_dir: Path, *, format: str, family: str, tokenizer_files: Path | None = None,
                    base_model: str | None = None, card_extra: dict | None = None, legacy_prefix: bool = False,
                    text_encoder_2=None, max_shard_size: int | str | None = None) -> Path:
    """Write `model` to `out_dir` in `format` and return `out_dir`.

    tokenizer_files: CLIP: a folder with vocab.json/merges.txt to copy (None: the bundled
        CLIP vocabulary is written); SigLIP: spiece.model or a folder holding it (required).
    legacy_prefix: write bare text-tower classes (CLIPTextModel, SiglipTextModel, the
        diffusers text_encoder) with transformers-4 "text_model." keys and position_ids.
    text_encoder_2: diffusers only; a CLIPModel whose text tower and projection become
        text_encoder_2/ (CLIPTextModelWithProjection), as in SDXL pipelines.
    """
    _check_request(model, format=format, family=family, text_encoder_2=text_encoder_2)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    max_length = int(model.config.text_config.max_position_embeddings)
    shard = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    if legacy_prefix and shard:
        raise ZooError("legacy_prefix and max_shard_size cannot be combined")

    if format in ("transformers-clip", "transformers-siglip"):
        model.save_pretrained(out_dir, **shard)
    elif format in ("transformers-clip-text", "transformers-siglip-text"):
        _save_bare_text_model(model, out_dir, legacy_prefix=legacy_prefix, shard=shard)
    elif format == "transformers-clip-text-projection":
        _save_text_with_projection(model, out_dir, shard=shard)
    elif format == "open_clip":
        _save_open_clip(model, out_dir)
    else:
        _save_diffusers(model, out_dir, legacy_prefix=legacy_prefix, text_encoder_2=text_encoder_2,
                        tokenizer_files=tokenizer_files)
    if format != "diffusers":
        _write_tokenizer(out_dir, family=family, tokenizer_files=tokenizer_files, max_length=max_length)
    _write_model_card(out_dir, format=format, family=family, base_model=base_model, card_extra=card_extra)
    return out_dir


def _check_request(model, *, format: str, family: str, text_encoder_2) -> None:
    from transformers import CLIPModel, SiglipModel

    if format not in FORMATS:
        raise ZooError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    if family not in FAMILIES:
        raise ZooError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    expected_class = SiglipModel if family == "siglip" else CLIPModel
    if not isinstance(model, expected_class):
        raise ZooError(f"family {family!r} needs a {expected_class.__name__}, got {type(model).__name__}")
    if family == "siglip" and format not in _SIGLIP_FORMATS:
        raise UnknownArchitectureError(
            f"format {format!r} cannot hold a SigLIP model: open_clip's SigLIP uses a timm vision tower "
            "and diffusers pipelines use CLIP text encoders; use transformers-siglip(-text)")
    if family != "siglip" and format in _SIGLIP_FORMATS:
        raise ZooError(f"format {format!r} is for SigLIP models, not {family!r}")
    positions = int(model.config.text_config.max_position_embeddings)
    if (family == "longclip") != (positions > CLIP_CONTEXT_LENGTH):
        raise ZooError(f"family {family!r} does not match a text tower with {positions} positions")
    if text_encoder_2 is not None and (format != "diffusers" or not isinstance(text_encoder_2, CLIPModel)):
        raise ZooError("text_encoder_2 must be a CLIPModel and is only written in the diffusers format")


# -- transformers -------------------------------------------------------------------------

def _bare_text_model(model):
    from transformers import CLIPTextModel, SiglipTextModel

    cls = SiglipTextModel if type(model).__name__ == "SiglipModel" else CLIPTextModel
    text_model = cls(copy.deepcopy(model.config.text_config))
    text_model.load_state_dict(model.text_model.state_dict())
    return text_model


def _save_bare_text_model(model, out_dir: Path, *, legacy_prefix: bool, shard: dict) -> None:
    text_model = _bare_text_model(model)
    text_model.save_pretrained(out_dir, **shard)
    if legacy_prefix:
        _rewrite_with_legacy_prefix(out_dir / "model.safetensors", positions=text_model.config.max_position_embeddings)


def _rewrite_with_legacy_prefix(weights: Path, *, positions: int) -> None:
    """transformers 4 kept the bare text classes' inner `text_model` attribute in key names,
    and (before 4.31) saved the position_ids buffer with the weights."""
    state = load_file(weights)
    legacy = {f"text_model.{k}": v for k, v in state.items()}
    legacy["text_model.embeddings.position_ids"] = torch.arange(positions, dtype=torch.int64)[None]
    save_file(legacy, weights, metadata={"format": "pt"})


def _save_text_with_projection(model, out_dir: Path, *, shard: dict) -> None:
    from transformers import CLIPTextModelWithProjection

    config = copy.deepcopy(model.config.text_config)
    config.projection_dim = int(model.config.projection_dim)
    tower = CLIPTextModelWithProjection(config)
    tower.text_model.load_state_dict(model.text_model.state_dict())
    tower.text_projection.load_state_dict(model.text_projection.state_dict())
    tower.save_pretrained(out_dir, **shard)


# -- open_clip ------------------------------------------------------------------------------

def _save_open_clip(model, out_dir: Path) -> None:
    text_cfg, vision_cfg = model.config.text_config, model.config.vision_config
    acts = {text_cfg.hidden_act, vision_cfg.hidden_act}
    if len(acts) != 1 or next(iter(acts)) not in _OPEN_CLIP_ACTS:
        raise UnknownArchitectureError(
            f"open_clip needs one activation for both towers, quick_gelu or gelu; got {sorted(acts)}")
    model_cfg = {
        "embed_dim": int(model.config.projection_dim),
        "quick_gelu": _OPEN_CLIP_ACTS[text_cfg.hidden_act],
        "vision_cfg": {
            "image_size": int(vision_cfg.image_size),
            "layers": int(vision_cfg.num_hidden_layers),
            "width": int(vision_cfg.hidden_size),
            "head_width": int(vision_cfg.hidden_size) // int(vision_cfg.num_attention_heads),
            "mlp_ratio": _mlp_ratio(vision_cfg),
            "patch_size": int(vision_cfg.patch_size),
            **_norm_kwargs(vision_cfg),
        },
        "text_cfg": {
            "context_length": int(text_cfg.max_position_embeddings),
            "vocab_size": int(text_cfg.vocab_size),
            "width": int(text_cfg.hidden_size),
            "heads": int(text_cfg.num_attention_heads),
            "layers": int(text_cfg.num_hidden_layers),
            "mlp_ratio": _mlp_ratio(text_cfg),
            **_norm_kwargs(text_cfg),
        },
    }
    config = {"model_cfg": model_cfg,
              "preprocess_cfg": {"mean": list(ZOO_IMAGE_MEAN), "std": list(ZOO_IMAGE_STD)}}
    (out_dir / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    save_file(open_clip_state_dict(model), out_dir / "open_clip_model.safetensors", metadata={"format": "pt"})


def _mlp_ratio(config) -> float:
    ratio = int(config.intermediate_size) / int(config.hidden_size)
    if int(int(config.hidden_size) * ratio) != int(config.intermediate_size):
        raise UnknownArchitectureError(
            f"open_clip cannot express intermediate_size {config.intermediate_size} for width {config.hidden_size}")
    return ratio


def _norm_kwargs(config) -> dict:
    eps = float(config.layer_norm_eps)
    return {} if eps == 1e-5 else {"norm_kwargs": {"eps": eps}}


def open_clip_state_dict(model) -> dict[str, torch.Tensor]:
    """A transformers CLIPModel's weights under open_clip CLIP key names."""
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    out = {
        "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": sd["text_model.final_layer_norm.weight"],
        "ln_final.bias": sd["text_model.final_layer_norm.bias"],
        "text_projection": sd["text_projection.weight"].t(),
        "visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
        "visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
        "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
        "visual.ln_pre.weight": sd["vision_model.pre_layrnorm.weight"],
        "visual.ln_pre.bias": sd["vision_model.pre_layrnorm.bias"],
        "visual.ln_post.weight": sd["vision_model.post_layernorm.weight"],
        "visual.ln_post.bias": sd["vision_model.post_layernorm.bias"],
        "visual.proj": sd["visual_projection.weight"].t(),
        "logit_scale": sd["logit_scale"],
    }
    out.update(_resblocks(sd, "text_model.encoder.layers.", "transformer.resblocks.",
                          model.config.text_config.num_hidden_layers))
    out.update(_resblocks(sd, "vision_model.encoder.layers.", "visual.transformer.resblocks.",
                          model.config.vision_config.num_hidden_layers))
    return {k: v.contiguous().clone() for k, v in out.items()}


def _resblocks(sd: dict, src: str, dst: str, layers: int) -> dict[str, torch.Tensor]:
    out = {}
    for i in range(layers):
        layer = f"{src}{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}{i}.attn.in_proj_{kind}"] = torch.cat(
                [sd[f"{layer}self_attn.{p}.{kind}"] for p in ("q_proj", "k_proj", "v_proj")])
            for open_clip_name, hf_name in RESBLOCK_RENAMES.items():
                out[f"{dst}{i}.{open_clip_name}.{kind}"] = sd[f"{layer}{hf_name}.{kind}"]
    return out


# -- diffusers ------------------------------------------------------------------------------

def _save_diffusers(model, out_dir: Path, *, legacy_prefix: bool, text_encoder_2, tokenizer_files: Path | None) -> None:
    max_length = int(model.config.text_config.max_position_embeddings)
    index = {
        "_class_name": "StableDiffusionXLPipeline" if text_encoder_2 is not None else "StableDiffusionPipeline",
        "_diffusers_version": "0.30.0",
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
    }
    _save_bare_text_model(model, out_dir / "text_encoder", legacy_prefix=legacy_prefix, shard={})
    _write_tokenizer(out_dir / "tokenizer", family="clip", tokenizer_files=tokenizer_files, max_length=max_length)
    if text_encoder_2 is not None:
        index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
        index["tokenizer_2"] = ["transformers", "CLIPTokenizer"]
        _save_text_with_projection(text_encoder_2, out_dir / "text_encoder_2", shard={})
        _write_tokenizer(out_dir / "tokenizer_2", family="clip", tokenizer_files=tokenizer_files,
                         max_length=int(text_encoder_2.config.text_config.max_position_embeddings))
    (out_dir / "model_index.json").write_text(json.dumps(index, indent=2))


# -- tokenizer and card ------------------------------------------------------------------------

def _write_tokenizer(directory: Path, *, family: str, tokenizer_files: Path | None, max_length: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if family == "siglip":
        spiece = tokenizer_files / "spiece.model" if tokenizer_files is not None and tokenizer_files.is_dir() \
            else tokenizer_files
        if spiece is None or not spiece.is_file():
            raise ZooError("a SigLIP export needs tokenizer_files: a spiece.model file or a folder holding one")
        shutil.copyfile(spiece, directory / "spiece.model")
        config = {"tokenizer_class": "SiglipTokenizer", "model_max_length": max_length, "eos_token": "</s>",
                  "pad_token": "</s>", "unk_token": "<unk>", "do_lower_case": True}
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        return
    if tokenizer_files is None:
        write_clip_tokenizer_files(directory, max_length=max_length)
        return
    copied = [name for name in CLIP_TOKENIZER_FILES if (tokenizer_files / name).is_file()]
    if not {"vocab.json", "merges.txt"} <= set(copied):
        raise ZooError(f"{tokenizer_files} lacks vocab.json and merges.txt for a CLIP tokenizer")
    for name in copied:
        shutil.copyfile(tokenizer_files / name, directory / name)


def _write_model_card(out_dir: Path, *, format: str, family: str, base_model: str | None,
                      card_extra: dict | None) -> None:
    import yaml

    library = {"open_clip": "open_clip", "diffusers": "diffusers"}.get(format, "transformers")
    pipeline = {"diffusers": "text-to-image", "transformers-clip-text": "feature-extraction",
                "transformers-clip-text-projection": "feature-extraction",
                "transformers-siglip-text": "feature-extraction"}.get(format, "zero-shot-image-classification")
    front: dict = {}
    if base_model is not None:
        front["base_model"] = base_model
    front.update(tags=["clip-audit-zoo", family, format], library_name=library, pipeline_tag=pipeline)
    for key, value in (card_extra or {}).items():
        if key == "tags":
            front["tags"] = front["tags"] + [t for t in value if t not in front["tags"]]
        else:
            front[key] = value
    body = (f"# {family} text encoder ({format})\n\n"
            "A tiny CLIP-family model from the clip-audit-bot zoo, trained on synthetic captioned shapes.\n")
    (out_dir / "README.md").write_text("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + body)
