"""Embedding inversion: optimise a pseudo-token v that makes every token's feature alike.

L(v) = -A(F') + beta * cos(F, F') + gamma * cos(F'_anchor, F')

Only v has a gradient: both encoders are frozen, so no weight gradients are computed.
Restarts run side by side in one batch (each with its own gamma): on a CPU a tiny
tower's step time is mostly per-call overhead, so R restarts cost little more than one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bot.detect.features import (
    PromptBatch,
    aligned_cosine,
    assimilation,
    insert,
    positionwise_cosine,
    span_mask,
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

    def with_gamma(self, gamma: float) -> "Objective":
        return Objective(self.suspect, self.anchor, k=self.k, beta=self.beta, gamma=gamma)

    def terms(self, v: torch.Tensor, batch: PromptBatch, *, gamma: torch.Tensor | None = None) -> LossTerms:
        """gamma: an optional per-row anchor weight [B] (side-by-side restarts), else self.gamma."""
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
            weight = self.gamma if gamma is None else gamma.to(anchor_cos.dtype)
            total = total + weight * anchor_cos
        return LossTerms(total=total, assimilation=a, self_cosine=self_cos, anchor_cosine=anchor_cos,
                         f_suspect=f, f_anchor=f_anchor, mask=mask)

    def loss(self, v: torch.Tensor, batch: PromptBatch) -> torch.Tensor:
        return self.terms(v, batch).total.mean()


@dataclass
class InversionRun:
    v: torch.Tensor          # [k,d], detached
    gamma: float             # the anchor weight this restart ran with
    losses: list[float]      # running loss per step
    steps: int
    stopped_early: bool


def invert(objective: Objective, train: PromptBatch, *, gammas: list[float], steps: int, batch_size: int,
           lr: float, weight_decay: float, generator: torch.Generator, patience: int = 60,
           progress=None) -> list[InversionRun]:
    """Adam on one v per restart, all restarts in one batch. A restart stops once its running loss
    has not improved for `patience` steps; the batch shrinks to the restarts still going."""
    r_count = len(gammas)
    d = objective.suspect.hidden_size
    device = objective.suspect.device
    v = torch.randn(r_count, objective.k, d, generator=generator).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([v], lr=lr, weight_decay=weight_decay)
    gamma_of = torch.tensor(gammas, dtype=torch.float32, device=device)
    n = train.x_suspect.shape[0]
    losses: list[list[float]] = [[] for _ in range(r_count)]
    best = [float("inf")] * r_count
    since_best = [0] * r_count
    finished: dict[int, InversionRun] = {}
    step = 0
    for step in range(1, steps + 1):
        active = [r for r in range(r_count) if r not in finished]
        index = torch.randint(0, n, (batch_size,), generator=generator).to(device)
        batch = train.select(index.repeat(len(active)))  # restart-major rows
        rows = torch.tensor(active, device=device).repeat_interleave(batch_size)
        total = objective.terms(v[rows], batch, gamma=gamma_of[rows]).total
        per_restart = total.view(len(active), batch_size).mean(1)
        optimizer.zero_grad(set_to_none=True)
        per_restart.sum().backward()  # restarts share no parameters: each gets its own gradient
        optimizer.step()
        for r, value in zip(active, per_restart.tolist()):
            running = value if not losses[r] else 0.9 * losses[r][-1] + 0.1 * value
            losses[r].append(running)
            if running < best[r] - 1e-3:
                best[r], since_best[r] = running, 0
            else:
                since_best[r] += 1
            if since_best[r] >= patience:
                finished[r] = InversionRun(v=v[r].detach().clone(), gamma=gammas[r], losses=losses[r],
                                           steps=step, stopped_early=True)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{min(l[-1] for l in losses):.3f}", running=r_count - len(finished))
        if len(finished) == r_count:
            break
    for r in range(r_count):
        if r not in finished:
            finished[r] = InversionRun(v=v[r].detach().clone(), gamma=gammas[r], losses=losses[r], steps=step,
                                       stopped_early=False)
    return [finished[r] for r in range(r_count)]
