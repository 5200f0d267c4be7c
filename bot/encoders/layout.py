"""Recognise a checkpoint directory (family, format, files) without reading any weights.

Supported layouts: transformers CLIP / SigLIP (full model or text tower), open_clip
(`open_clip_config.json`), and diffusers pipelines (`model_index.json`, whose
text_encoder*/ subfolders are transformers text towers). Everything else is
refused with an exception that says what was found and what to do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from bot.encoders.safetensors_check import check_safetensors
from bot.errors import (
    CorruptCheckpointError,
    NothingScannableError,
    PickleOnlyError,
    UnknownArchitectureError,
    UsageError,
)
from bot.formats import CLIP_CONTEXT_LENGTH, CLIP_EOS_ID, OPEN_CLIP_WEIGHTS, PICKLE_SUFFIXES

# transformers class -> (model_type it is saved with, our format name)
TRANSFORMERS_CLASSES = {
    "CLIPModel": ("clip", "transformers-clip"),
    "CLIPTextModel": ("clip_text_model", "transformers-clip-text"),
    "CLIPTextModelWithProjection": ("clip_text_model", "transformers-clip-text-projection"),
    "SiglipModel": ("siglip", "transformers-siglip"),
    "SiglipTextModel": ("siglip_text_model", "transformers-siglip-text"),
}
_DEFAULT_CLASS = {"clip": "CLIPModel", "clip_text_model": "CLIPTextModel",
                  "siglip": "SiglipModel", "siglip_text_model": "SiglipTextModel"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# open_clip text-tower options with no CLIPTextModel equivalent.
_OPEN_CLIP_UNSUPPORTED = ("ls_init_value", "embed_cls", "qk_norm", "scaled_cosine_attn", "scale_heads",
                          "scale_attn_inner", "scale_attn", "scale_fc", "proj_bias", "act_kwargs")


@dataclass(frozen=True)
class CheckpointInfo:
    root: Path                       # the directory that was given
    family: str                      # clip | longclip | siglip
    format: str                      # one of FORMATS
    architecture: str                # transformers class of the scanned tower, or "open_clip"
    config_path: Path
    weight_files: tuple[Path, ...]   # safetensors files (shards in index order)
    weight_bytes: int
    tokenizer_dir: Path | None       # holds vocab.json+merges.txt or spiece.model; None: none in the repo
    base_model: str | None
    subfolder: str | None = None     # the scanned subfolder (diffusers text_encoder, text_encoder_2, ...)
    other_text_encoders: tuple[str, ...] = ()  # diffusers text-encoder subfolders present but not scanned
    ignored_custom_code: bool = False           # config has auto_map; that code was never imported


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, too deep, a number past the digit limit
        reason = str(exc)[:200] or type(exc).__name__
        raise UnknownArchitectureError(f"{path.name} is not valid JSON ({reason}); cannot tell the architecture"
                                       ) from None
    if not isinstance(data, dict):
        raise UnknownArchitectureError(f"{path.name} is not a JSON object; cannot tell the architecture")
    return data


def clip_text_section(config: dict, config_path: Path) -> dict:
    """The text-tower part of a transformers CLIPModel / SiglipModel config (legacy *_dict keys merged)."""
    section, legacy = config.get("text_config") or {}, config.get("text_config_dict") or {}
    if not isinstance(section, dict) or not isinstance(legacy, dict):
        raise UnknownArchitectureError(f"{config_path}: text_config is not a JSON object; not a CLIP-family config")
    return {**section, **legacy}


def _positions(value: object, config_path: Path) -> int:
    """The position count a config claims (max_position_embeddings, context_length): here it only tells LongCLIP
    from CLIP; the weights' shapes check it before anything is built."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnknownArchitectureError(f"{config_path}: the text position count {repr(value)[:40]} is not a whole "
                                       "number; not a text tower config")
    return value


def open_clip_model_cfg(config: dict) -> dict:
    return config.get("model_cfg", config)


def inspect_checkpoint(path: Path, *, subfolder: str | None = None) -> CheckpointInfo:
    root = Path(path)
    if not root.is_dir():
        raise NothingScannableError(f"{root} is not a directory; pass a local checkpoint directory")
    if (root / "model_index.json").is_file():
        return _inspect_diffusers(root, subfolder=subfolder)
    directory = root
    if subfolder is not None:
        directory = root / subfolder
        if not directory.is_dir():
            raise UsageError(f"subfolder {subfolder!r} does not exist in {root}")
    info = _inspect_plain(directory)
    readme_base = _base_model_from_card(directory) or _base_model_from_card(root)
    return replace(info, root=root, subfolder=subfolder, base_model=readme_base or info.base_model)


# -- one directory: transformers or open_clip ------------------------------------------

def _inspect_plain(directory: Path) -> CheckpointInfo:
    config_path, open_clip_path = directory / "config.json", directory / "open_clip_config.json"
    transformers_error: UnknownArchitectureError | None = None
    if config_path.is_file():
        try:
            return _inspect_transformers(directory, config_path, fallback_open_clip=open_clip_path.is_file())
        except UnknownArchitectureError as exc:
            transformers_error = exc
    if open_clip_path.is_file():
        return _inspect_open_clip(directory, open_clip_path)
    if transformers_error is not None:
        raise transformers_error
    raise _no_config_error(directory)


def _no_config_error(directory: Path) -> NothingScannableError:
    pickles = _pickle_files(directory)
    if list(directory.glob("*.safetensors")):
        return UnknownArchitectureError(
            f"{directory} has safetensors weights but no config.json, open_clip_config.json or model_index.json; "
            "cannot tell the architecture (single-file checkpoints are not supported)")
    if pickles:
        return _pickle_only_error(directory, pickles)
    return NothingScannableError(f"{directory} holds no checkpoint (no config and no weights)")


def _inspect_transformers(directory: Path, config_path: Path, *, fallback_open_clip: bool) -> CheckpointInfo:
    config = read_json(config_path)
    architecture = _transformers_architecture(config, config_path)
    weights = _transformers_weights(directory)
    if weights is None and fallback_open_clip and _first_existing(directory, OPEN_CLIP_WEIGHTS):
        return _inspect_open_clip(directory, directory / "open_clip_config.json")
    if weights is None:
        raise _missing_weights_error(directory)
    if architecture == "CLIPTextModel" and architecture not in _declared_classes(config):
        architecture = _text_model_class_from_keys(weights)
    model_type, fmt = TRANSFORMERS_CLASSES[architecture]
    text = clip_text_section(config, config_path) if model_type in ("clip", "siglip") else config
    if model_type.startswith("siglip"):
        family = "siglip"
    else:
        positions = _positions(text.get("max_position_embeddings", CLIP_CONTEXT_LENGTH), config_path)
        family = "longclip" if positions > CLIP_CONTEXT_LENGTH else "clip"
    return CheckpointInfo(
        root=directory, family=family, format=fmt, architecture=architecture, config_path=config_path,
        weight_files=weights, weight_bytes=sum(p.stat().st_size for p in weights),
        tokenizer_dir=_tokenizer_dir(directory, siglip=family == "siglip"),
        base_model=_hub_id(config.get("_name_or_path")), ignored_custom_code="auto_map" in config,
    )


def _declared_classes(config: dict) -> list[str]:
    """The class names a config's `architectures` list gives (anything else there is ignored)."""
    declared = config.get("architectures")
    return [a for a in declared if isinstance(a, str)] if isinstance(declared, list) else []


def _transformers_architecture(config: dict, config_path: Path) -> str:
    model_type = config.get("model_type")
    declared = _declared_classes(config)
    if not isinstance(model_type, str) or model_type not in _DEFAULT_CLASS:
        custom = " It also names custom code (auto_map), which clip-audit never runs." if "auto_map" in config else ""
        found = f"model_type {repr(model_type)[:60]}" + (f" ({', '.join(declared)[:200]})" if declared else "")
        raise UnknownArchitectureError(
            f"{config_path} describes {found}, not a CLIP-family text encoder "
            f"(supported model_type: {', '.join(_DEFAULT_CLASS)}).{custom}")
    for name in declared:
        if name in TRANSFORMERS_CLASSES and TRANSFORMERS_CLASSES[name][0] == model_type:
            return name
    # Unknown or custom class names over a standard model_type: load the standard class.
    return _DEFAULT_CLASS[model_type]


def _text_model_class_from_keys(weights: tuple[Path, ...]) -> str:
    """Without `architectures`, a clip_text_model with a text_projection tensor is the projection variant."""
    for weight in weights:
        if any(t.name == "text_projection.weight" for t in check_safetensors(weight).tensors):
            return "CLIPTextModelWithProjection"
    return "CLIPTextModel"


def _transformers_weights(directory: Path) -> tuple[Path, ...] | None:
    single = directory / "model.safetensors"
    if single.is_file():
        return (single,)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return _shards(index)
    variants = sorted(p for p in directory.glob("model.*.safetensors") if p.is_file())
    if variants:
        return (variants[0],)
    variant_indexes = sorted(directory.glob("model.*.safetensors.index.json"))
    if variant_indexes:
        return _shards(variant_indexes[0])
    return None


def _shards(index: Path) -> tuple[Path, ...]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = list(dict.fromkeys(weight_map.values()))
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
        raise CorruptCheckpointError(f"{index.name} is not a valid sharded-checkpoint index (no weight_map)") from None
    shards = []
    for name in names:
        if not isinstance(name, str) or not _is_plain_name(name):
            raise CorruptCheckpointError(f"{index.name} names shard {repr(name)[:80]}, which is not a file name in "
                                         "the checkpoint's folder")
        shard = index.parent / name
        if not shard.is_file():
            raise CorruptCheckpointError(f"{index.name} names shard {name!r}, which is missing; download it again")
        shards.append(shard)
    return tuple(shards)


# -- open_clip ---------------------------------------------------------------------------

def _inspect_open_clip(directory: Path, config_path: Path) -> CheckpointInfo:
    config = read_json(config_path)
    model_cfg = open_clip_model_cfg(config)
    text_cfg = model_cfg.get("text_cfg") if isinstance(model_cfg, dict) else None
    if not isinstance(text_cfg, dict):
        raise UnknownArchitectureError(f"{config_path} has no model_cfg.text_cfg; not an open_clip CLIP config")
    check_open_clip_text_cfg(text_cfg, config_path)
    names = OPEN_CLIP_WEIGHTS + (() if (directory / "config.json").is_file() else ("model.safetensors",))
    weight = _first_existing(directory, names)
    if weight is None:
        raise _missing_weights_error(directory)
    positions = _positions(text_cfg.get("context_length", CLIP_CONTEXT_LENGTH), config_path)
    family = "longclip" if positions > CLIP_CONTEXT_LENGTH else "clip"
    return CheckpointInfo(
        root=directory, family=family, format="open_clip", architecture="open_clip", config_path=config_path,
        weight_files=(weight,), weight_bytes=weight.stat().st_size,
        tokenizer_dir=_tokenizer_dir(directory, siglip=False), base_model=None,
    )


def check_open_clip_text_cfg(text_cfg: dict, config_path: Path) -> None:
    """Refuse open_clip text towers that CLIPTextModel cannot reproduce exactly."""
    if text_cfg.get("hf_model_name"):
        raise UnknownArchitectureError(
            f"{config_path} uses the Hugging Face text tower {text_cfg['hf_model_name']!r}, "
            "not a CLIP text transformer; not supported")
    if text_cfg.get("no_causal_mask") or text_cfg.get("pool_type", "argmax") not in ("argmax", "eos"):
        raise UnknownArchitectureError(
            f"{config_path} describes a bidirectional / last-token text tower (SigLIP-style open_clip); "
            "not supported in open_clip layout, scan the transformers (SiglipModel) copy instead")
    if text_cfg.get("pool_type") == "eos" and text_cfg.get("eos_id") != CLIP_EOS_ID:
        raise UnknownArchitectureError(
            f"{config_path} pools at token id {text_cfg.get('eos_id', 2)!r}, which is not CLIP's end-of-text "
            f"({CLIP_EOS_ID}); not supported")
    for option in _OPEN_CLIP_UNSUPPORTED:
        if text_cfg.get(option):
            raise UnknownArchitectureError(
                f"{config_path} sets text_cfg.{option}={text_cfg[option]!r}, which a standard CLIP text "
                "transformer does not have; not supported")
    if text_cfg.get("block_type") not in (None, "default") or text_cfg.get("proj_type", "linear") not in ("linear", "none"):
        raise UnknownArchitectureError(
            f"{config_path} uses a custom text block or projection "
            f"(block_type={text_cfg.get('block_type')!r}, proj_type={text_cfg.get('proj_type')!r}); not supported")


# -- diffusers ---------------------------------------------------------------------------

def _inspect_diffusers(root: Path, *, subfolder: str | None) -> CheckpointInfo:
    index = read_json(root / "model_index.json")
    components = {name: spec[1] for name, spec in index.items()
                  if isinstance(spec, list) and len(spec) == 2 and isinstance(spec[1], str)}
    # A component is a folder of the pipeline: a name that leads elsewhere ("text_encoder/../..") is none.
    encoders = [name for name, cls in components.items()
                if name.startswith("text_encoder") and _is_plain_name(name) and cls in TRANSFORMERS_CLASSES
                and (root / name).is_dir()]
    encoders.sort()
    if not encoders:
        listed = ", ".join(f"{n}={c}" for n, c in components.items() if n.startswith("text_encoder"))[:300] or "none"
        raise UnknownArchitectureError(
            f"{root}/model_index.json lists no CLIP-family text encoder folder (text encoders: {listed})")
    chosen = subfolder or encoders[0]
    if chosen not in encoders:
        raise UsageError(f"subfolder {chosen!r} is not a CLIP-family text encoder of this pipeline; "
                         f"choose one of: {', '.join(encoders)}")
    inner = _inspect_plain(root / chosen)
    if inner.format == "open_clip":
        raise UnknownArchitectureError(f"{root / chosen} is not a transformers text encoder")
    tokenizer_name = "tokenizer" + chosen[len("text_encoder"):]
    tokenizer_dir = _tokenizer_dir(root / tokenizer_name, siglip=inner.family == "siglip")
    return replace(inner, root=root, format="diffusers", subfolder=chosen, tokenizer_dir=tokenizer_dir,
                    other_text_encoders=tuple(e for e in encoders if e != chosen),
                    base_model=_base_model_from_card(root) or inner.base_model)


# -- shared helpers ------------------------------------------------------------------------

def _is_plain_name(name: str) -> bool:
    """A file or folder name inside one folder: no separator, no way up, nothing a path could misread."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _first_existing(directory: Path, names: tuple[str, ...]) -> Path | None:
    return next((directory / n for n in names if (directory / n).is_file()), None)


def _pickle_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)


def _pickle_only_error(directory: Path, pickles: list[Path]) -> PickleOnlyError:
    names = ", ".join(p.name for p in pickles[:3])
    return PickleOnlyError(
        f"{directory} has only pickle weights ({names}); clip-audit never unpickles. "
        "Publish a .safetensors copy of the weights to have it scanned")


def _missing_weights_error(directory: Path) -> NothingScannableError:
    pickles = _pickle_files(directory)
    if pickles:
        return _pickle_only_error(directory, pickles)
    return NothingScannableError(f"{directory} has a config but no safetensors weights")


def _tokenizer_dir(directory: Path, *, siglip: bool) -> Path | None:
    for candidate in (directory, directory / "tokenizer"):
        if siglip and (candidate / "spiece.model").is_file():
            return candidate
        if not siglip and (candidate / "vocab.json").is_file() and (candidate / "merges.txt").is_file():
            return candidate
    return None


def _hub_id(value: object) -> str | None:
    return value if isinstance(value, str) and _HUB_ID.fullmatch(value) else None


# A card's front matter is read for its base_model hint only when it ends within this many bytes of the start:
# YAML parses at ~30 KB/s on a busy CPU, and a megabyte of it would stall the scan for the sake of a hint.
MAX_CARD_FRONT_MATTER_BYTES = 64 * 1024


def _base_model_from_card(directory: Path) -> str | None:
    card = directory / "README.md"
    if not card.is_file():
        return None
    import yaml
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    try:
        with card.open("rb") as handle:
            head = handle.read(MAX_CARD_FRONT_MATTER_BYTES).decode("utf-8-sig", errors="replace")
        block = REGEX_YAML_BLOCK.search(head)
        metadata = (yaml.safe_load(block.group(2)) if block else None) or {}
        if not isinstance(metadata, dict):
            return None
    except Exception:  # a malformed card (bad YAML) only loses the hint
        return None
    base = metadata.get("base_model")
    if isinstance(base, list):
        base = next((b for b in base if isinstance(b, str)), None)
    return _hub_id(base)
