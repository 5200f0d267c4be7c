"""Load the text tower of a CLIP-family checkpoint directory into a TextEncoder.

Safetensors only: every file is validated before it is opened, only text-tower
tensors are read, and custom code named by a config (auto_map) is never run.
Weights land in float32 in the transformers text class the config describes,
loaded strictly, so a checkpoint that does not match its config is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bot.encoders.layout import CheckpointInfo, inspect_checkpoint, open_clip_model_cfg, read_json
from bot.encoders.safetensors_check import check_safetensors
from bot.encoders.text_encoder import TextEncoder
from bot.encoders.tokenizers import load_clip_tokenizer, load_siglip_tokenizer
from bot.encoders.tower import ACTIVATIONS, TextTower, TowerSpec
from bot.errors import (
    CheckpointError,
    CorruptCheckpointError,
    NothingScannableError,
    ShapeMismatchError,
    UnknownArchitectureError,
)
from bot.formats import CLIP_EOS_ID, MAX_TOWER_DIMENSION

CLIP_BOS_ID = 49406

# open_clip residual-block names -> transformers encoder-layer names (the attention
# input projection is fused in open_clip and split here).
RESBLOCK_RENAMES = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_RESBLOCK_KEY = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)$")
_LAYER_KEY = re.compile(r"^encoder\.layers\.(\d+)\.")
_IN_PROJ_KEY = re.compile(r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$")

# Tensors of the other towers and of the contrastive head, never read.
_SKIPPED_PREFIXES = {
    "CLIPModel": ("vision_model.", "visual_projection.", "logit_scale"),
    "SiglipModel": ("vision_model.", "logit_scale", "logit_bias"),
    "open_clip": ("visual.", "logit_scale", "logit_bias", "attn_mask"),
}
_PROJECTED = ("CLIPModel", "CLIPTextModelWithProjection")


@dataclass(frozen=True)
class TextSpec:
    tower: TowerSpec
    projection_dim: int | None     # CLIP text_projection output size; None: no separate projection


def load_text_encoder(path: Path, *, device: str | torch.device = "cpu", subfolder: str | None = None,
                      max_bytes: int | None = None) -> TextEncoder:
    """The frozen text tower of the checkpoint at `path` (see layout.inspect_checkpoint)."""
    info = inspect_checkpoint(Path(path), subfolder=subfolder)
    if max_bytes is not None and info.weight_bytes > max_bytes:
        raise NothingScannableError(
            f"{info.root}: weights are {info.weight_bytes:,} bytes, over the size cap of {max_bytes:,}; "
            "raise the cap to scan it")
    spec = text_spec(info)
    tensors = read_text_tensors(info, max_bytes=max_bytes)
    text_state, projection_weight = map_to_transformers(info.architecture, tensors)
    source = str(info.root / info.subfolder) if info.subfolder else str(info.root)

    tower = build_tower(spec, text_state, source=source)
    projection = None
    if spec.projection_dim is not None:
        state = {} if projection_weight is None else {"weight": projection_weight}
        # checked before the layer is made: nn.Linear allocates the size the config claims
        check_shapes({"weight": (spec.projection_dim, spec.tower.hidden_size)}, state, source=source,
                     prefix="text_projection.")
        projection = nn.Linear(spec.tower.hidden_size, spec.projection_dim, bias=False)
        load_strictly(projection, state, source=source, prefix="text_projection.")
    elif projection_weight is not None:
        raise ShapeMismatchError(
            f"{source}: the checkpoint has a text_projection {tuple(projection_weight.shape)} "
            "that the config's architecture has no place for")

    tokenizer = _load_tokenizer(info, spec.tower, source=source)
    encoder = TextEncoder(family=info.family, tower=tower, projection=projection,
                          tokenizer=tokenizer, source=source, format=info.format)
    return encoder.to(device)


# -- configs ---------------------------------------------------------------------------------

def text_spec(info: CheckpointInfo) -> TextSpec:
    from huggingface_hub.errors import StrictDataclassError

    config = read_json(info.config_path)
    config.pop("auto_map", None)  # custom code is never imported; the standard class is used
    try:
        spec = _spec_from_config(config, info)
    except (StrictDataclassError, ValueError, TypeError, AttributeError, KeyError, ArithmeticError) as exc:
        # transformers' config classes validate what they are given (and open_clip's do not: a field of the
        # wrong type fails where it is used): their complaint, without a traceback
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()[:300]
        raise ShapeMismatchError(f"{info.config_path}: not a text tower config ({reason})") from None
    if spec.projection_dim is not None and not 0 < spec.projection_dim <= MAX_TOWER_DIMENSION:
        raise ShapeMismatchError(f"{info.config_path}: impossible text projection size {spec.projection_dim}")
    return spec


def _spec_from_config(config: dict, info: CheckpointInfo) -> TextSpec:
    from transformers import CLIPConfig, CLIPTextConfig, SiglipConfig, SiglipTextConfig

    arch = info.architecture
    if arch == "open_clip":
        return _open_clip_spec(config, info)
    if arch == "CLIPModel":
        full = CLIPConfig.from_dict(config)
        return TextSpec(tower=tower_spec(full.text_config, info), projection_dim=int(full.projection_dim))
    if arch == "SiglipModel":
        return TextSpec(tower=tower_spec(SiglipConfig.from_dict(config).text_config, info), projection_dim=None)
    if arch == "SiglipTextModel":
        return TextSpec(tower=tower_spec(SiglipTextConfig.from_dict(config), info), projection_dim=None)
    text = CLIPTextConfig.from_dict(config)
    projection_dim = int(text.projection_dim) if arch in _PROJECTED else None
    return TextSpec(tower=tower_spec(text, info), projection_dim=projection_dim)


def _open_clip_spec(config: dict, info: CheckpointInfo) -> TextSpec:
    from open_clip.model import CLIPTextCfg
    from transformers import CLIPTextConfig

    model_cfg = open_clip_model_cfg(config)
    try:
        text = CLIPTextCfg(**model_cfg["text_cfg"])
        embed_dim = int(model_cfg["embed_dim"])
    except (TypeError, KeyError, ValueError) as exc:
        raise UnknownArchitectureError(f"{info.config_path}: not a model_cfg open_clip can build ({exc})") from None
    intermediate = int(text.width * text.mlp_ratio)
    norm_eps = (text.norm_kwargs or {}).get("eps", 1e-5)
    clip_config = CLIPTextConfig(
        vocab_size=text.vocab_size, hidden_size=text.width, intermediate_size=intermediate,
        num_attention_heads=text.heads, num_hidden_layers=text.layers,
        max_position_embeddings=text.context_length, layer_norm_eps=float(norm_eps),
        hidden_act="quick_gelu" if model_cfg.get("quick_gelu") else "gelu",
        bos_token_id=CLIP_BOS_ID, eos_token_id=CLIP_EOS_ID, pad_token_id=CLIP_EOS_ID,
        projection_dim=embed_dim,
    )
    return TextSpec(tower=tower_spec(clip_config, info),
                    projection_dim=None if text.proj_type == "none" else embed_dim)


def tower_spec(config, info: CheckpointInfo) -> TowerSpec:
    """The TowerSpec a transformers text config describes, refused unless every number is one a tower can have
    (a config is the uploader's claim: nothing is built from it before the weights' shapes confirm it)."""
    siglip = info.family == "siglip"
    try:
        numbers = {name: int(getattr(config, name)) for name in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "max_position_embeddings")}
        eps = float(config.layer_norm_eps)
        head = int(getattr(config, "projection_size", None) or config.hidden_size) if siglip else None
    except (TypeError, ValueError, AttributeError) as exc:
        raise UnknownArchitectureError(f"{info.config_path}: the text config is not a tower's ({exc})") from None
    bad = [f"{name}={value}" for name, value in numbers.items() if not 0 < value <= MAX_TOWER_DIMENSION]
    if bad or not 0 < eps < 1 or (head is not None and not 0 < head <= MAX_TOWER_DIMENSION):
        raise ShapeMismatchError(f"{info.config_path}: impossible text tower dimensions ({', '.join(bad) or eps})")
    if numbers["hidden_size"] % numbers["num_attention_heads"]:
        raise ShapeMismatchError(f"{info.config_path}: hidden_size {numbers['hidden_size']} is not a multiple of "
                                 f"num_attention_heads {numbers['num_attention_heads']}")
    activation = str(config.hidden_act)
    if activation not in ACTIVATIONS:
        raise UnknownArchitectureError(f"{info.config_path}: text activation {activation!r} is not one CLIP-family "
                                       f"towers use ({', '.join(sorted(ACTIVATIONS))})")
    return TowerSpec(vocab_size=numbers["vocab_size"], hidden_size=numbers["hidden_size"],
                     intermediate_size=numbers["intermediate_size"], num_layers=numbers["num_hidden_layers"],
                     num_heads=numbers["num_attention_heads"], max_positions=numbers["max_position_embeddings"],
                     activation=activation, layer_norm_eps=eps, causal=not siglip, head_size=head)


def build_tower(spec: TextSpec, state: dict[str, torch.Tensor], *, source: str) -> TextTower:
    """The tower holding `state`, once every name and shape match the spec. A config claiming more layers than
    the weights hold is refused before its layers are even laid out."""
    layers = {int(m.group(1)) for key in state if (m := _LAYER_KEY.match(key))}
    if spec.tower.num_layers > len(layers):
        raise ShapeMismatchError(f"{source}: the config describes {spec.tower.num_layers} text layers but the "
                                 f"checkpoint holds {len(layers)}; weights and config.json do not match")
    tower = TextTower(spec.tower, device="meta")  # laid out, nothing allocated: the checkpoint's tensors fill it
    load_strictly(tower, state, source=source, assign=True)
    return tower.eval()


# -- tensors -----------------------------------------------------------------------------------

def read_text_tensors(info: CheckpointInfo, *, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """Validate every weight file, then read only the tensors that can belong to the text tower."""
    from safetensors import SafetensorError, safe_open

    skipped = _SKIPPED_PREFIXES.get(info.architecture, ())
    tensors: dict[str, torch.Tensor] = {}
    for weight_file in info.weight_files:
        summary = check_safetensors(weight_file, max_bytes=max_bytes)
        try:
            with safe_open(str(weight_file), framework="pt", device="cpu") as handle:
                for entry in summary.tensors:
                    if entry.name.startswith(skipped):
                        continue
                    if entry.name in tensors:
                        raise CorruptCheckpointError(f"{weight_file.name}: tensor {entry.name!r} appears in two shards")
                    tensors[entry.name] = handle.get_tensor(entry.name)
        except SafetensorError as exc:
            raise CorruptCheckpointError(f"{weight_file.name} cannot be read as safetensors: {exc}") from None
    return tensors


def map_to_transformers(architecture: str, tensors: dict[str, torch.Tensor]
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Text-tower state dict in transformers CLIPTextModel/SiglipTextModel names, plus the CLIP projection."""
    if architecture == "open_clip":
        text, projection = open_clip_to_transformers(tensors)
    else:
        tensors = dict(tensors)
        projection = tensors.pop("text_projection.weight", None)
        prefixed = any(k.startswith("text_model.") for k in tensors)
        # transformers 4 saved every text class with the "text_model." prefix; 5 drops it for the bare classes.
        text = {(k[len("text_model."):] if k.startswith("text_model.") else k): v for k, v in tensors.items()} \
            if prefixed else tensors
    text.pop("embeddings.position_ids", None)  # a buffer older transformers saved with the weights
    return text, projection


def open_clip_to_transformers(tensors: dict[str, torch.Tensor]
                              ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """open_clip CLIP (or CustomTextCLIP, under "text.") text keys -> transformers CLIPTextModel keys."""
    prefix = "text." if any(k.startswith("text.") for k in tensors) else ""
    out: dict[str, torch.Tensor] = {}
    projection = None
    for key, value in tensors.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name == "text_projection":  # a [width, embed] parameter applied as x @ P
            projection = value.t().contiguous()
        elif name == "text_projection.weight":  # an nn.Linear in newer configs
            projection = value
        elif name == "token_embedding.weight":
            out["embeddings.token_embedding.weight"] = value
        elif name == "positional_embedding":
            out["embeddings.position_embedding.weight"] = value
        elif name.startswith("ln_final."):
            out["final_layer_norm." + name[len("ln_final."):]] = value
        elif (fused := _IN_PROJ_KEY.match(name)) and value.shape[0] % 3 == 0:
            layer, kind = fused.groups()
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"encoder.layers.{layer}.self_attn.{part}.{kind}"] = chunk.contiguous()
        elif (block := _RESBLOCK_KEY.match(name)) and block.group(2) in RESBLOCK_RENAMES:
            layer, module, kind = block.groups()
            out[f"encoder.layers.{layer}.{RESBLOCK_RENAMES[module]}.{kind}"] = value
        else:
            out[name] = value  # no transformers counterpart: strict loading names it
    return out, projection


def load_strictly(module: nn.Module, state: dict[str, torch.Tensor], *, source: str, prefix: str = "",
                  assign: bool = False) -> None:
    """load_state_dict(strict=True) in float32, with the first offending key and both shapes in the error;
    assign: the tensors become the module's own (a module on the meta device).

    Weights must be floating point and finite: a NaN or an infinity makes every feature NaN, and a scan of
    them would run to its time limit for a verdict that means nothing."""
    check_shapes({k: tuple(t.shape) for k, t in module.state_dict().items()}, state, source=source, prefix=prefix)
    weights = {}
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise CheckpointError(f"{source}: tensor {prefix}{key} holds {tensor.dtype} values, not floating point "
                                  "weights")
        weights[key] = tensor.to(torch.float32)
        if not bool(torch.isfinite(weights[key]).all()):
            raise CheckpointError(f"{source}: tensor {prefix}{key} holds NaN or infinite values; a tower with them "
                                  "computes nothing that can be audited")
    module.load_state_dict(weights, strict=True, assign=assign)


def check_shapes(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], *, source: str,
                 prefix: str = "") -> None:
    """Every expected tensor present with its shape, and nothing else: the first offender is named."""
    for key, shape in expected.items():
        if key not in state:
            raise ShapeMismatchError(f"{source}: tensor {prefix}{key} {shape} is missing from the checkpoint")
        if tuple(state[key].shape) != shape:
            raise ShapeMismatchError(
                f"{source}: tensor {prefix}{key} is {tuple(state[key].shape)} in the checkpoint but the config "
                f"describes {shape}; weights and config.json do not match")
    for key, tensor in state.items():
        if key not in expected:
            raise ShapeMismatchError(
                f"{source}: the checkpoint has tensor {prefix}{key} {tuple(tensor.shape)} that the config's "
                "architecture does not have (shape: none)")


# -- tokenizer -----------------------------------------------------------------------------------

def _load_tokenizer(info: CheckpointInfo, spec: TowerSpec, *, source: str):
    max_length = spec.max_positions
    if info.family == "siglip" and info.tokenizer_dir is None:
        where = "tokenizer/ of the pipeline" if info.format == "diffusers" else "the repo or its tokenizer/"
        raise NothingScannableError(
            f"{source}: SigLIP checkpoint without spiece.model (looked in {where}); "
            "its tokenizer cannot be rebuilt, so it cannot be scanned")
    try:
        if info.family == "siglip":
            tokenizer = load_siglip_tokenizer(info.tokenizer_dir / "spiece.model", max_length=max_length)
        else:
            tokenizer = load_clip_tokenizer(info.tokenizer_dir, max_length=max_length)
        ids = tokenizer.get_vocab().values()
        special = (tokenizer.eos_token_id, tokenizer.pad_token_id)
    except (ValueError, TypeError, KeyError, AttributeError, OSError, RuntimeError) as exc:
        # vocab.json, merges.txt and spiece.model are the uploader's files: the libraries' complaint, one line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()[:200]
        raise CheckpointError(f"{source}: the tokenizer files cannot be read ({type(exc).__name__}: {reason})"
                              ) from None
    if len(tokenizer) > spec.vocab_size:
        raise ShapeMismatchError(
            f"{source}: the tokenizer has {len(tokenizer)} tokens but the token embedding has "
            f"{spec.vocab_size} rows")
    # every id the tokenizer can give must be a row of the token embedding
    if any(not isinstance(i, int) for i in special) or not all(0 <= i < spec.vocab_size for i in (*ids, *special)):
        raise ShapeMismatchError(
            f"{source}: the tokenizer gives token ids outside the token embedding's {spec.vocab_size} rows "
            "(or has no end-of-text token)")
    return tokenizer
