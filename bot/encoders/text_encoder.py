"""TextEncoder: the one interface the detector sees, whatever the checkpoint format.

It runs the tower (bot.encoders.tower) from embeddings, so the detector can insert a
pseudo-token between the embedding layer and layer 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bot.encoders.tower import TextTower


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE (CLIP, GPT-2) writes every byte as a printable character: bytes that are
    printable latin-1 stand for themselves, the others are moved up past 255 in order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTE_OF = _byte_level_alphabet()


def byte_level_bytes(token: str) -> bytes | None:
    """The bytes a byte-level BPE token stands for (None when it is not made of that alphabet)."""
    try:
        return bytes(_BYTE_OF[c] for c in token)
    except KeyError:
        return None


@dataclass
class Tokenized:
    input_ids: torch.Tensor   # [B, L] long
    real_mask: torch.Tensor   # [B, L] bool: real tokens incl. BOS and the first EOS
    eos_index: torch.Tensor   # [B] long: position whose feature is pooled (CLIP) / last real token


class TextEncoder:
    """A frozen CLIP-family text tower.

    Args:
        family: "clip" | "longclip" | "siglip".
        tower: the text transformer (SigLIP's pooled-feature head included).
        projection: CLIP's text_projection (None for SigLIP, whose head lives in the tower).
        tokenizer: a transformers tokenizer for the family.
        source, format: where the weights came from, for records.
    """

    def __init__(self, *, family: str, tower: TextTower, projection: nn.Module | None,
                 tokenizer, source: str, format: str) -> None:
        self.family = family
        self.tower = tower.eval()
        self.projection = projection.eval() if projection is not None else None
        for module in (self.tower, self.projection):
            if module is not None:
                module.requires_grad_(False)
        self.tokenizer = tokenizer
        self.source = source
        self.format = format
        spec = tower.spec
        self.max_length = spec.max_positions
        self.hidden_size = spec.hidden_size
        self.num_layers = spec.num_layers
        self.causal = spec.causal
        self.has_bos = family != "siglip"
        self.eos_token_id = int(tokenizer.eos_token_id)
        self.pad_token_id = int(tokenizer.pad_token_id)
        self.vocab_size = spec.vocab_size

    # -- placement -----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.token_embeddings.device

    def to(self, device: torch.device | str) -> "TextEncoder":
        self.tower.to(device)
        if self.projection is not None:
            self.projection.to(device)
        return self

    # -- tokens and embeddings -----------------------------------------------------
    def tokenize(self, texts: list[str]) -> Tokenized:
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        ids = enc["input_ids"].to(self.device)
        is_eos = ids == self.eos_token_id
        # The first EOS ends the real text (pad == eos for CLIP and SigLIP).
        eos_index = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(ids[:, 0], ids.shape[1] - 1))
        positions = torch.arange(ids.shape[1], device=ids.device)[None]
        real_mask = positions <= eos_index[:, None]
        return Tokenized(input_ids=ids, real_mask=real_mask, eos_index=eos_index)

    @property
    def token_embeddings(self) -> torch.Tensor:
        return self.tower.embeddings.token_embedding.weight

    @property
    def position_embeddings(self) -> torch.Tensor:
        return self.tower.embeddings.position_embedding.weight

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token + position embeddings: the input of layer 0."""
        return self.tower.embeddings(input_ids)

    def decode_token(self, token_id: int) -> str:
        """The token as a person would type it: "mn", not BPE's "mn</w>" or sentencepiece's "▁mn";
        "е" (Cyrillic), not byte-level BPE's "Ðµ". A token that holds only part of a character's
        UTF-8 bytes cannot be typed alone and is shown as its bytes, e.g. "<0xD0>"."""
        raw = str(self.tokenizer.convert_ids_to_tokens(int(token_id)))
        if self.family != "siglip":
            data = byte_level_bytes(raw.replace("</w>", ""))
            if data is not None:
                try:
                    return data.decode("utf-8").strip() or raw
                except UnicodeDecodeError:
                    return "".join(f"<0x{b:02X}>" for b in data)
        text = raw.replace("</w>", " ").replace("\u2581", " ").strip()
        return text or raw

    # -- the transformer stack -----------------------------------------------------
    def encode_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """All layers (with the family's mask) and the final LayerNorm: F = last_hidden_state."""
        return self.tower(x)

    def attention_to(self, x: torch.Tensor, position: int | torch.Tensor) -> list[torch.Tensor]:
        """Per layer, the share of attention that every query puts on `position` (one index, or one per
        prompt [B]).

        Returns one [B] tensor per layer: the mean over heads and over the queries
        that can see `position` (those after it when causal).
        """
        b, length = x.shape[0], x.shape[1]
        at = torch.as_tensor(position, device=x.device).expand(b)
        queries = torch.arange(length, device=x.device)[None]
        seen = (queries >= at[:, None]) if self.causal else torch.ones(b, length, dtype=torch.bool, device=x.device)
        weight = seen.to(x.dtype)[:, None, :]  # [B, 1, L]
        h = x
        shares = []
        for layer in self.tower.layers():
            probs = layer.self_attn.probabilities(layer.layer_norm1(h), causal=self.causal)  # [B, H, L, L]
            column = probs.gather(-1, at[:, None, None, None].expand(b, probs.shape[1], length, 1))[..., 0]
            shares.append((column * weight).sum((1, 2)) / (weight.sum((1, 2)) * probs.shape[1]))
            h = layer(h, causal=self.causal)
        return shares

    def encode(self, tokens: Tokenized) -> torch.Tensor:
        return self.encode_embeddings(self.embed(tokens.input_ids))

    # -- pooling and projection ------------------------------------------------------
    def pooled(self, features: torch.Tensor, eos_index: torch.Tensor) -> torch.Tensor:
        """CLIP pools the first EOS; SigLIP pools the last position."""
        if self.family == "siglip":
            return features[:, -1]
        return features[torch.arange(features.shape[0], device=features.device), eos_index]

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.family == "siglip":
            return self.tower.head(pooled)
        return self.projection(pooled) if self.projection is not None else pooled

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """Pooled, projected text embeddings (what zero-shot classification uses)."""
        tokens = self.tokenize(texts)
        return self.project(self.pooled(self.encode(tokens), tokens.eos_index))
