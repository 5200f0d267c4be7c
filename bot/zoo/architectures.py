"""Tiny CLIP-family architectures for the zoo, as real transformers configs.

Sizes are chosen so that a model pretrains on two CPU cores in about a minute
and still learns a grounded text encoder (zero-shot retrieval well above chance).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TinyArch:
    family: str
    max_length: int
    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 4
    vision_hidden: int = 96
    vision_layers: int = 3
    vision_heads: int = 4
    patch_size: int = 8
    image_size: int = 32
    projection_dim: int = 128
    siglip_vocab_size: int = 3000


ARCHITECTURES = {
    "clip": TinyArch(family="clip", max_length=77),
    "longclip": TinyArch(family="longclip", max_length=248),
    "siglip": TinyArch(family="siglip", max_length=64),
}


def build_model(arch: TinyArch, *, vocab_size: int):
    """A freshly initialised transformers CLIPModel / SiglipModel for `arch`."""
    text = dict(
        vocab_size=vocab_size,
        hidden_size=arch.text_hidden,
        intermediate_size=4 * arch.text_hidden,
        num_hidden_layers=arch.text_layers,
        num_attention_heads=arch.text_heads,
        max_position_embeddings=arch.max_length,
    )
    vision = dict(
        hidden_size=arch.vision_hidden,
        intermediate_size=4 * arch.vision_hidden,
        num_hidden_layers=arch.vision_layers,
        num_attention_heads=arch.vision_heads,
        image_size=arch.image_size,
        patch_size=arch.patch_size,
        num_channels=3,
    )
    if arch.family == "siglip":
        from transformers import SiglipConfig, SiglipModel

        text["projection_size"] = arch.projection_dim
        text.update(pad_token_id=1, eos_token_id=1, bos_token_id=None)
        vision["hidden_size"] = arch.projection_dim  # SigLIP compares towers without projections
        vision["intermediate_size"] = 4 * arch.projection_dim
        config = SiglipConfig(text_config=text, vision_config=vision)
        return SiglipModel(config)
    from transformers import CLIPConfig, CLIPModel

    text.update(bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=arch.projection_dim)
    return CLIPModel(config)
