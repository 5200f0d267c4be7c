"""The text transformer of every CLIP-family checkpoint the bot scans, in plain torch.

A scan needs the text tower's forward pass and nothing else; the transformers modeling
classes cost a scan process ~200 MB and several seconds of imports, and a per-layer call
overhead that dominates a tiny tower's step. This module holds the same parameters under
the same names as transformers' CLIPTextModel / SiglipTextModel (without their `text_model.`
nesting), so a state dict loads into either, and computes the same features (tested against
transformers on trained checkpoints in tests/test_encoders.py).

A checkpoint's tower is first built on the meta device: nothing is allocated until its own
tensors, checked against the spec's shapes, are assigned to it (bot.encoders.load.build_tower).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


@dataclass(frozen=True)
class TowerSpec:
    """The shape and arithmetic of one text tower."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    max_positions: int
    activation: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    causal: bool = True                 # CLIP and LongCLIP; SigLIP attends both ways
    head_size: int | None = None        # SigLIP's pooled-feature head (a Linear inside the tower)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


# Parameter holders without initialisation: torch.nn's layers initialise on construction, which on
# the meta device still imports torch._dynamo (seconds) for nothing, as the checkpoint's tensors
# replace every value.
class Linear(nn.Module):
    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(outputs, inputs))
        self.bias = nn.Parameter(torch.empty(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class LayerNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(size))
        self.bias = nn.Parameter(torch.empty(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class Table(nn.Module):
    def __init__(self, rows: int, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(rows, size))


class Embeddings(nn.Module):
    def __init__(self, spec: TowerSpec) -> None:
        super().__init__()
        self.token_embedding = Table(spec.vocab_size, spec.hidden_size)
        self.position_embedding = Table(spec.max_positions, spec.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = self.position_embedding.weight[: input_ids.shape[1]]
        return F.embedding(input_ids, self.token_embedding.weight) + positions


class Attention(nn.Module):
    def __init__(self, spec: TowerSpec) -> None:
        super().__init__()
        d = spec.hidden_size
        self.num_heads = spec.num_heads
        self.scale = spec.head_dim ** -0.5
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (Linear(d, d) for _ in range(4))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, *, causal: bool) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=self.scale)
        return self.out_proj(out.transpose(1, 2).reshape(x.shape))

    def probabilities(self, x: torch.Tensor, *, causal: bool) -> torch.Tensor:
        """The attention weights [B, heads, L, L] (for explanations; the forward pass never forms them)."""
        q, k = self._heads(self.q_proj(x)), self._heads(self.k_proj(x))
        scores = (q @ k.transpose(-1, -2)) * self.scale
        if causal:
            length = x.shape[1]
            future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        return scores.softmax(-1)


class Mlp(nn.Module):
    def __init__(self, spec: TowerSpec) -> None:
        super().__init__()
        self.fc1 = Linear(spec.hidden_size, spec.intermediate_size)
        self.fc2 = Linear(spec.intermediate_size, spec.hidden_size)
        self.activation = ACTIVATIONS[spec.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class Layer(nn.Module):
    """Pre-norm residual block: x + attn(ln1(x)), then + mlp(ln2(x))."""

    def __init__(self, spec: TowerSpec) -> None:
        super().__init__()
        self.layer_norm1 = LayerNorm(spec.hidden_size, spec.layer_norm_eps)
        self.self_attn = Attention(spec)
        self.layer_norm2 = LayerNorm(spec.hidden_size, spec.layer_norm_eps)
        self.mlp = Mlp(spec)

    def forward(self, x: torch.Tensor, *, causal: bool) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), causal=causal)
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, spec: TowerSpec) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Layer(spec) for _ in range(spec.num_layers))


class TextTower(nn.Module):
    """Embeddings, the layer stack and the final LayerNorm (SigLIP: and its head)."""

    def __init__(self, spec: TowerSpec, *, device: str | torch.device | None = None) -> None:
        super().__init__()
        self.spec = spec
        with torch.device(device) if device is not None else nullcontext():
            self.embeddings = Embeddings(spec)
            self.encoder = Encoder(spec)
            self.final_layer_norm = LayerNorm(spec.hidden_size, spec.layer_norm_eps)
            if spec.head_size is not None:
                self.head = Linear(spec.hidden_size, spec.head_size)

    @classmethod
    def random(cls, spec: TowerSpec, *, seed: int = 0) -> TextTower:
        """Randomly initialised (timing benchmarks, unit tests): a scan's verdict on it means nothing."""
        generator = torch.Generator().manual_seed(seed)
        tower = cls(spec, device="cpu")
        with torch.no_grad():
            for name, tensor in tower.named_parameters():
                if name.endswith("bias"):
                    tensor.zero_()
                elif tensor.ndim == 1:  # LayerNorm weights
                    tensor.fill_(1.0)
                else:
                    tensor.normal_(0.0, 0.02 if "embedding" in name else 1 / math.sqrt(tensor.shape[-1]),
                                   generator=generator)
        return tower.eval()

    def layers(self) -> nn.ModuleList:
        return self.encoder.layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Layer-0 inputs (token + position embeddings) -> last hidden state."""
        causal = self.spec.causal
        for layer in self.encoder.layers:
            x = layer(x, causal=causal)
        return self.final_layer_norm(x)

