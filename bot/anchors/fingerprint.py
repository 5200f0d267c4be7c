"""A text tower's architecture fingerprint, read from tensor shapes alone (safetensors headers or a model).

Shapes cannot lie about what the weights are, unlike a config: the fingerprint of a checkpoint is taken from
its token and position embeddings and its count of layers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

_LAYER = re.compile(r"(?:^|\.)(?:encoder\.layers|transformer\.resblocks)\.(\d+)\.")
_VISION_PREFIXES = ("visual.", "vision_model.", "vision_tower.")


@dataclass(frozen=True)
class Fingerprint:
    family: str      # clip | longclip | siglip
    hidden: int      # width of the text tower
    layers: int
    vocab: int       # rows of the token embedding
    positions: int   # rows of the position embedding

    def describe(self) -> str:
        return (f"{self.family} text tower, width {self.hidden}, {self.layers} layers, "
                f"{self.vocab} tokens, {self.positions} positions")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _text_side(name: str) -> bool:
    return not name.startswith(_VISION_PREFIXES) and ".vision_model." not in name


def fingerprint_from_shapes(family: str, shapes: Mapping[str, Sequence[int]]) -> Fingerprint | None:
    """The fingerprint of the text tower among `shapes` (tensor name -> shape), or None when it has none."""
    token = position = None
    layers: set[int] = set()
    for name, shape in shapes.items():
        if not _text_side(name):
            continue
        if "token_embedding" in name and len(shape) == 2:
            token = shape
        elif ("position_embedding" in name or "positional_embedding" in name) and len(shape) == 2:
            position = shape
        match = _LAYER.search(name)
        if match:
            layers.add(int(match.group(1)))
    if token is None or position is None or not layers:
        return None
    return Fingerprint(family=family, hidden=int(token[1]), layers=max(layers) + 1, vocab=int(token[0]),
                       positions=int(position[0]))
