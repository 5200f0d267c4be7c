"""Any loaded text tower, dressed as the transformers model the zoo's training code fine-tunes.

The attacks and fine-tunes in bot/zoo/ (attacks.py, hard_attacks.py, text_fine_tune.py) were written against
transformers' CLIPModel / SiglipModel: `model.text_model(input_ids=...)` with `last_hidden_state` and
`pooler_output`, an optional `model.text_projection`, and parameters named `text_model.*` and
`text_projection.*`. `TowerModel` gives a TextEncoder's tower (bot.encoders, whatever layout the checkpoint
came in: transformers, open_clip or a diffusers text encoder) exactly that surface, so the same recipes apply
to any registered base, not only the zoo's own; `as_encoder` turns a trained copy back into a TextEncoder
for the detector.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from bot.encoders.text_encoder import TextEncoder
from bot.encoders.tower import TextTower


class TowerOutput(NamedTuple):
    last_hidden_state: torch.Tensor   # [B, L, d] after the final LayerNorm
    pooler_output: torch.Tensor       # [B, d]: the first EOS (CLIP, LongCLIP) or the last position through the head


class PooledTower(nn.Module):
    """The `text_model` of a TowerModel: the tower's forward pass and the family's pooling."""

    def __init__(self, tower: TextTower, *, siglip: bool, eos_token_id: int) -> None:
        super().__init__()
        self.tower = tower
        self.siglip = siglip
        self.eos_token_id = eos_token_id

    def forward(self, input_ids: torch.Tensor) -> TowerOutput:
        hidden = self.tower(self.tower.embeddings(input_ids))
        if self.siglip:
            return TowerOutput(hidden, self.tower.head(hidden[:, -1]))
        eos = (input_ids == self.eos_token_id).int().argmax(1)   # the first EOS, as transformers' CLIP pools
        return TowerOutput(hidden, hidden[torch.arange(hidden.shape[0], device=hidden.device), eos])


class TowerModel(nn.Module):
    """A text tower (and its projection) with the transformers model surface the zoo's training code uses."""

    def __init__(self, encoder: TextEncoder) -> None:
        super().__init__()
        self.family = encoder.family
        self.causal = encoder.causal          # bot.zoo.pretrain.is_causal reads this
        self.text_model = PooledTower(encoder.tower, siglip=encoder.family == "siglip",
                                      eos_token_id=encoder.eos_token_id)
        if encoder.projection is not None:
            self.text_projection = encoder.projection

    def as_encoder(self, base: TextEncoder, *, name: str) -> TextEncoder:
        """These weights as a frozen TextEncoder (what the detector scans), with `base`'s tokenizer and format.
        The modules are shared, not copied: call it once training is over."""
        projection = self.text_projection if hasattr(self, "text_projection") else None
        return TextEncoder(family=self.family, tower=self.text_model.tower, projection=projection,
                           tokenizer=base.tokenizer, source=name, format=base.format)


class DeviceTokenizer:
    """A tokenizer whose ids land on the model's device: the zoo's training code tokenizes on the host, which
    is where the zoo's tiny models live, while a real base trains on a GPU."""

    def __init__(self, tokenizer, device: torch.device) -> None:
        self.tokenizer = tokenizer
        self.device = device
        self.eos_token_id = tokenizer.eos_token_id

    def __call__(self, texts: list[str], **kwargs) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokenizer(texts, **kwargs)["input_ids"].to(self.device)}
