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
    # CPU copy of tokens.eos_index: selections are cut to their longest prompt without reading the device
    eos_host: torch.Tensor | None = None
    # CPU bool [B]: rows whose clean features are not computed yet (prepare(lazy=True)); None: all are
    pending: torch.Tensor | None = None

    def fill(self, encoder: TextEncoder, rows: torch.Tensor) -> None:
        """Compute the clean features of those of `rows` (CPU indices) still pending. The inversion draws
        a few hundred of its thousand prompts before the adaptive restarts stop it, so it computes only those."""
        if self.pending is None:
            return
        need = rows[self.pending[rows]].unique()
        if need.numel() == 0:
            return
        cut = int(self._eos(need).max()) + 1 if self.causal else self.length
        device_rows = need.to(self.x_suspect.device)
        with torch.no_grad():
            self.f_suspect[device_rows, :cut] = encoder.encode_embeddings(
                self.x_suspect[device_rows, :cut]).to(self.f_suspect.dtype)
        self.pending[need] = False

    def _eos(self, index: torch.Tensor) -> torch.Tensor:
        """EOS positions of `index`, read from the host copy when there is one (no device sync)."""
        if self.eos_host is not None:
            return self.eos_host[index.cpu()]
        return self.tokens.eos_index[index]

    def select(self, index: torch.Tensor) -> PromptBatch:
        """The rows in `index` (on the host: no device sync; or on the device), cut to the longest of them
        under a causal mask: nothing after a prompt's EOS reaches the features measured, so every statistic
        is unchanged and a step costs what its longest prompt needs. Bidirectional towers (SigLIP) attend
        to their padding: they keep every position."""
        eos_host = None if self.eos_host is None else self.eos_host[index.cpu()]
        length = self.length
        if self.causal and index.numel():
            eos = self.tokens.eos_index[index] if eos_host is None else eos_host
            length = min(self.length, int(eos.max()) + 1)
        rows = index.to(self.x_suspect.device)
        t = self.tokens
        return PromptBatch(
            tokens=Tokenized(t.input_ids[rows, :length], t.real_mask[rows, :length], t.eos_index[rows]),
            length=length,
            x_suspect=self.x_suspect[rows, :length],
            x_anchor=None if self.x_anchor is None else self.x_anchor[rows, :length],
            f_suspect=self.f_suspect[rows, :length],
            causal=self.causal,
            eos_host=eos_host,
        )

    def by_length(self) -> torch.Tensor:
        """Row indices shortest prompt first: chunks taken in this order waste the least padding."""
        return (self.tokens.eos_index if self.eos_host is None else self.eos_host).argsort(stable=True)


def _trim_length(encoder: TextEncoder, tokens: Tokenized, k: int) -> int:
    """Causal towers never look past EOS, so the all-padding tail can be cut (plus room for
    the k inserted tokens). Bidirectional towers (SigLIP) pool the last position: keep all."""
    if not encoder.causal:
        return encoder.max_length
    return min(encoder.max_length - k, int(tokens.eos_index.max()) + 1)


@torch.no_grad()
def prepare(suspect: TextEncoder, anchor: TextEncoder | None, prompts: list[str], *, k: int,
            batch_size: int = 256, lazy: bool = False) -> PromptBatch:
    """Tokens, embeddings and clean features of `prompts`; lazy: the features wait for `PromptBatch.fill`."""
    tokens = suspect.tokenize(prompts)
    length = _trim_length(suspect, tokens, k)
    ids = tokens.input_ids[:, :length]
    tokens = Tokenized(ids, tokens.real_mask[:, :length], tokens.eos_index.clamp(max=length - 1))
    x_all = suspect.embed(ids)
    f_all = torch.zeros_like(x_all)
    batch = PromptBatch(tokens=tokens, length=length, x_suspect=x_all, x_anchor=None, f_suspect=f_all,
                        causal=suspect.causal, eos_host=tokens.eos_index.cpu(),
                        pending=torch.ones(len(prompts), dtype=torch.bool))
    if not lazy:
        # chunk by chunk, shortest prompts first, so each chunk wastes the least padding (padding
        # positions keep zeros, which nothing reads)
        order = batch.eos_host.argsort(stable=True) if suspect.causal else torch.arange(len(prompts))
        for start in range(0, len(prompts), batch_size):
            batch.fill(suspect, order[start:start + batch_size])
        batch.pending = None
    batch.x_anchor = anchor.embed(ids.to(anchor.device)) if anchor is not None else None
    return batch


POSITIONS = ("start", "middle", "end")


def insertion_points(batch: PromptBatch, position: str, *, has_bos: bool) -> torch.Tensor | None:
    """[B] index each prompt's pseudo-token goes to: "start" right after BOS (the reference's; None,
    the fast path), "end" right before EOS, "middle" half-way through the prompt's tokens. A trigger
    trained to fire in one place only (the last word, mid-sentence) is invisible from the others."""
    return points(batch.tokens.eos_index, position, has_bos=has_bos)


def points(eos: torch.Tensor, position: str, *, has_bos: bool) -> torch.Tensor | None:
    """insertion_points from the prompts' EOS indices."""
    if position not in POSITIONS:
        raise ValueError(f"unknown insertion position {position!r}")
    if position == "start":
        return None
    start = 1 if has_bos else 0
    return eos if position == "end" else start + (eos - start) // 2


def insert(x: torch.Tensor, v: torch.Tensor, *, has_bos: bool, max_length: int,
           at: torch.Tensor | None = None) -> torch.Tensor:
    """X' = [BOS, v, rest...] (CLIP) or [v, rest...] (SigLIP), cut to max_length; with `at` ([B]),
    v goes before each prompt's token at that index instead.

    v gets no position embedding; every other token keeps its own, as in the reference.
    """
    vb = v.to(x.dtype)
    if vb.dim() == 2:  # one pseudo-token sequence shared by the batch, else one per row
        vb = vb.unsqueeze(0).expand(x.shape[0], -1, -1)
    if at is None:
        if has_bos:
            out = torch.cat([x[:, :1], vb, x[:, 1:]], dim=1)
        else:
            out = torch.cat([vb, x], dim=1)
        return out[:, :max_length]
    b, t, d = x.shape
    k = vb.shape[1]
    j = torch.arange(min(t + k, max_length), device=x.device)[None]
    start = at.to(x.device)[:, None]
    source = torch.where(j < start, j, j - k).clamp(0, t - 1)
    out = x.gather(1, source[..., None].expand(b, -1, d))
    inside = (j >= start) & (j < start + k)
    from_v = vb.gather(1, (j - start).clamp(0, k - 1)[..., None].expand(b, -1, d))
    return torch.where(inside[..., None], from_v, out)


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
                   has_bos: bool, at: torch.Tensor | None = None) -> torch.Tensor:
    """Per prompt, mean cosine between each original token's clean feature and its feature
    after insertion (shifted by k when it sits after the insertion point)."""
    length = f_triggered.shape[1]
    start = 1 if has_bos else 0
    if at is None:
        n = length - k - start
        clean = f_clean[:, start:start + n]
        shifted = f_triggered[:, start + k:start + k + n]
        mask = batch.tokens.real_mask[:, start:start + n]
        return masked_mean(F.cosine_similarity(clean.float(), shifted.float(), dim=-1), mask)
    n = min(f_clean.shape[1], length) - start
    i = torch.arange(start, start + n, device=f_clean.device)[None]
    moved = i + k * (i >= at.to(f_clean.device)[:, None])
    fits = moved < length
    b, _, d = f_triggered.shape
    shifted = f_triggered.gather(1, moved.clamp(max=length - 1)[..., None].expand(b, -1, d))
    mask = batch.tokens.real_mask[:, start:start + n] & fits
    return masked_mean(F.cosine_similarity(f_clean[:, start:start + n].float(), shifted.float(), dim=-1), mask)


def positionwise_cosine(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return masked_mean(F.cosine_similarity(a.float(), b.float(), dim=-1), mask)
