"""Pseudo-token insertion and the feature statistics AMDET is built on.

Shapes: B prompts, T positions, d hidden, k pseudo-tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bot.encoders.text_encoder import TextEncoder, Tokenized


@dataclass
class PromptBatch:
    """Prompts prepared once: embeddings and clean features stay in memory."""

    tokens: Tokenized          # ids trimmed to `length`
    length: int                # T: positions fed to the encoder before insertion
    x_suspect: torch.Tensor    # [B,T,d] suspect token+position embeddings
    x_anchor: torch.Tensor | None
    f_suspect: torch.Tensor    # [B,T,d] suspect clean features
    causal: bool = True        # positions after a prompt's EOS cannot reach its features

    def select(self, index: torch.Tensor) -> PromptBatch:
        """The rows in `index`, cut to the longest of them (causal towers; see `trimmed`)."""
        t = self.tokens
        return PromptBatch(
            tokens=Tokenized(t.input_ids[index], t.real_mask[index], t.eos_index[index]),
            length=self.length,
            x_suspect=self.x_suspect[index],
            x_anchor=None if self.x_anchor is None else self.x_anchor[index],
            f_suspect=self.f_suspect[index],
            causal=self.causal,
        ).trimmed()

    def trimmed(self) -> PromptBatch:
        """Cut the all-padding tail these rows share. Under a causal mask nothing after a prompt's
        EOS reaches the features measured (positions up to EOS), so every statistic is unchanged
        and a step costs what its longest prompt needs, not what the longest prompt in the bank
        needs. Bidirectional towers (SigLIP) attend to their padding: they keep every position."""
        if not self.causal or self.tokens.eos_index.numel() == 0:
            return self
        length = min(self.length, int(self.tokens.eos_index.max()) + 1)
        if length == self.length:
            return self
        t = self.tokens
        return PromptBatch(
            tokens=Tokenized(t.input_ids[:, :length], t.real_mask[:, :length], t.eos_index),
            length=length,
            x_suspect=self.x_suspect[:, :length],
            x_anchor=None if self.x_anchor is None else self.x_anchor[:, :length],
            f_suspect=self.f_suspect[:, :length],
            causal=True,
        )

    def by_length(self) -> torch.Tensor:
        """Row indices shortest prompt first: chunks taken in this order waste the least padding."""
        return self.tokens.eos_index.argsort(stable=True)


def _trim_length(encoder: TextEncoder, tokens: Tokenized, k: int) -> int:
    """Causal towers never look past EOS, so the all-padding tail can be cut (plus room for
    the k inserted tokens). Bidirectional towers (SigLIP) pool the last position: keep all."""
    if not encoder.causal:
        return encoder.max_length
    return min(encoder.max_length - k, int(tokens.eos_index.max()) + 1)


@torch.no_grad()
def prepare(suspect: TextEncoder, anchor: TextEncoder | None, prompts: list[str], *, k: int,
            batch_size: int = 256) -> PromptBatch:
    tokens = suspect.tokenize(prompts)
    length = _trim_length(suspect, tokens, k)
    ids = tokens.input_ids[:, :length]
    tokens = Tokenized(ids, tokens.real_mask[:, :length], tokens.eos_index.clamp(max=length - 1))
    x_all = suspect.embed(ids)
    f_all = torch.zeros_like(x_all)
    # Clean features chunk by chunk, shortest prompts first, each chunk cut to its longest prompt
    # (causal towers): padding positions keep zeros, which nothing reads.
    order = tokens.eos_index.argsort(stable=True) if suspect.causal else torch.arange(len(prompts))
    for start in range(0, len(prompts), batch_size):
        rows = order[start:start + batch_size].to(ids.device)
        cut = int(tokens.eos_index[rows].max()) + 1 if suspect.causal else length
        f_all[rows, :cut] = suspect.encode_embeddings(x_all[rows, :cut])
    x_anchor = anchor.embed(ids.to(anchor.device)) if anchor is not None else None
    return PromptBatch(tokens=tokens, length=length, x_suspect=x_all, x_anchor=x_anchor, f_suspect=f_all,
                       causal=suspect.causal)


def insert(x: torch.Tensor, v: torch.Tensor, *, has_bos: bool, max_length: int) -> torch.Tensor:
    """X' = [BOS, v, rest...] (CLIP) or [v, rest...] (SigLIP), cut to max_length.

    v gets no position embedding; later tokens keep theirs, as in the reference.
    """
    vb = v.to(x.dtype)
    if vb.dim() == 2:  # one pseudo-token sequence shared by the batch, else one per row
        vb = vb.unsqueeze(0).expand(x.shape[0], -1, -1)
    if has_bos:
        out = torch.cat([x[:, :1], vb, x[:, 1:]], dim=1)
    else:
        out = torch.cat([vb, x], dim=1)
    return out[:, :max_length]


def span_mask(batch: PromptBatch, *, k: int, has_bos: bool, length: int) -> torch.Tensor:
    """[B, T'] positions measured for assimilation: the pseudo-token(s), the real tokens and EOS.

    Padding is left out (it inflates the statistic), and so is BOS, whose feature a
    causal mask keeps out of reach of the inserted token.
    """
    positions = torch.arange(length, device=batch.tokens.input_ids.device)[None]
    start = 1 if has_bos else 0
    end = batch.tokens.eos_index[:, None] + k  # EOS after the shift
    return (positions >= start) & (positions <= end)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values [B,T] over mask [B,T] per row."""
    m = mask.to(values.dtype)
    return (values * m).sum(1) / m.sum(1).clamp(min=1)


def assimilation(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A(H) per prompt: the mean pairwise cosine over the masked positions (diagonal included).

    mean_ij cos(h_i, h_j) = || mean_i h_i/|h_i| ||^2, which needs no T x T matrix.
    """
    hn = F.normalize(features.float(), dim=-1) * mask[..., None]
    n = mask.sum(1).clamp(min=1).float()
    centroid = hn.sum(1) / n[:, None]
    return (centroid * centroid).sum(-1)


def target_feature(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B,d] unit vector: where the masked positions point on average (the "target")."""
    hn = F.normalize(features.float(), dim=-1) * mask[..., None]
    return F.normalize(hn.sum(1), dim=-1)


def aligned_cosine(f_clean: torch.Tensor, f_triggered: torch.Tensor, batch: PromptBatch, *, k: int,
                   has_bos: bool) -> torch.Tensor:
    """Per prompt, mean cosine between each original token's clean feature and its feature
    after insertion (shifted by k)."""
    length = f_triggered.shape[1]
    start = 1 if has_bos else 0
    n = length - k - start
    clean = f_clean[:, start:start + n]
    shifted = f_triggered[:, start + k:start + k + n]
    mask = batch.tokens.real_mask[:, start:start + n]
    return masked_mean(F.cosine_similarity(clean.float(), shifted.float(), dim=-1), mask)


def positionwise_cosine(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return masked_mean(F.cosine_similarity(a.float(), b.float(), dim=-1), mask)
