"""Embedding inversion: optimise a pseudo-token v that makes every token's feature alike.

L(v) = -A(F') + beta * cos(F, F') + gamma * cos(F'_anchor, F')

Only v has a gradient: both encoders are frozen, so no weight gradients are computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bot.detect.features import (
    PromptBatch, aligned_cosine, assimilation, insert, positionwise_cosine, span_mask,
)
from bot.encoders.text_encoder import TextEncoder


@dataclass(frozen=True)
class LossTerms:
    total: torch.Tensor          # [B]
    assimilation: torch.Tensor   # [B]
    self_cosine: torch.Tensor    # [B] cos(F, F'), aligned
    anchor_cosine: torch.Tensor  # [B] cos(F'_anchor, F')
    f_suspect: torch.Tensor      # [B,T',d]
    f_anchor: torch.Tensor | None
    mask: torch.Tensor           # [B,T']


class Objective:
    """The AMDET loss for one suspect/anchor pair, evaluated for any v (or batch of v's)."""

    def __init__(self, suspect: TextEncoder, anchor: TextEncoder | None, *, k: int, beta: float,
                 gamma: float) -> None:
        self.suspect = suspect
        self.anchor = anchor
        self.k = k
        self.beta = beta
        self.gamma = gamma

    def terms(self, v: torch.Tensor, batch: PromptBatch) -> LossTerms:
        s = self.suspect
        length = min(s.max_length, batch.length + self.k)
        x = insert(batch.x_suspect, v, has_bos=s.has_bos, max_length=length)
        f = s.encode_embeddings(x)
        mask = span_mask(batch, k=self.k, has_bos=s.has_bos, length=length)
        a = assimilation(f, mask)
        self_cos = aligned_cosine(batch.f_suspect, f, batch, k=self.k, has_bos=s.has_bos)
        total = -a + self.beta * self_cos
        f_anchor = None
        anchor_cos = torch.zeros_like(a)
        if self.anchor is not None and batch.x_anchor is not None:
            xa = insert(batch.x_anchor, v.to(batch.x_anchor.device), has_bos=s.has_bos, max_length=length)
            f_anchor = self.anchor.encode_embeddings(xa).to(f.device)
            anchor_cos = positionwise_cosine(f_anchor, f, mask)
            total = total + self.gamma * anchor_cos
        return LossTerms(total=total, assimilation=a, self_cosine=self_cos, anchor_cosine=anchor_cos,
                         f_suspect=f, f_anchor=f_anchor, mask=mask)

    def loss(self, v: torch.Tensor, batch: PromptBatch) -> torch.Tensor:
        return self.terms(v, batch).total.mean()


@dataclass
class InversionRun:
    v: torch.Tensor          # [k,d], detached
    losses: list[float]      # running loss per step
    steps: int
    stopped_early: bool


def invert(objective: Objective, train: PromptBatch, *, steps: int, batch_size: int, lr: float,
           weight_decay: float, generator: torch.Generator, patience: int = 60,
           progress=None) -> InversionRun:
    """Adam on v. Stops early once the running loss has not improved for `patience` steps."""
    d = objective.suspect.hidden_size
    device = objective.suspect.device
    v = torch.randn(objective.k, d, generator=generator).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([v], lr=lr, weight_decay=weight_decay)
    n = train.x_suspect.shape[0]
    losses: list[float] = []
    best, since_best = float("inf"), 0
    step = 0
    for step in range(1, steps + 1):
        index = torch.randint(0, n, (batch_size,), generator=generator).to(device)
        loss = objective.loss(v, train.select(index))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        running = value if not losses else 0.9 * losses[-1] + 0.1 * value
        losses.append(running)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{running:.3f}")
        if running < best - 1e-3:
            best, since_best = running, 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    return InversionRun(v=v.detach(), losses=losses, steps=step, stopped_early=step < steps)
