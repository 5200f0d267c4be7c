"""Embedding inversion: optimise a pseudo-token v that makes every token's feature alike.

L(v) = -A(F') + beta * cos(F, F') + gamma * cos(F'_anchor, F')

Only v has a gradient: both encoders are frozen, so no weight gradients are computed.
Restarts run side by side in one batch (each with its own gamma): on a CPU a tiny
tower's step time is mostly per-call overhead, so R restarts cost little more than one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

import torch
import torch.nn.functional as F

from bot.detect.features import (
    PromptBatch,
    aligned_cosine,
    assimilation,
    insert,
    insertion_points,
    points,
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
    pooled: torch.Tensor         # [B,d] the suspect's pooled feature with v inserted
    # [B,e] unit pooled, projected embeddings with v inserted (suspect, anchor); computed only when a
    # row's restart optimises them (mode "pooled")
    embedding: torch.Tensor | None = None
    anchor_embedding: torch.Tensor | None = None


MODES = ("tokens", "pooled")


def _group_consensus(embedding: torch.Tensor, groups: int) -> torch.Tensor:
    """[B,e] the unit mean embedding of each row's group, the rows being `groups` equal consecutive
    blocks (restart-major batches); shapes only, so nothing is read back from the device."""
    blocks = embedding.view(groups, -1, embedding.shape[-1])
    return F.normalize(blocks.sum(1, keepdim=True), dim=-1).expand_as(blocks).reshape_as(embedding)


class Objective:
    """The AMDET loss for one suspect/anchor pair, evaluated for any v (or batch of v's)."""

    def __init__(self, suspect: TextEncoder, anchor: TextEncoder | None, *, k: int, beta: float,
                 gamma: float, position: str = "start", mode: str = "tokens") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown objective mode {mode!r}")
        self.suspect = suspect
        self.anchor = anchor
        self.k = k
        self.beta = beta
        self.gamma = gamma
        self.position = position  # where v goes in each prompt (features.POSITIONS)
        self.mode = mode

    def with_gamma(self, gamma: float, position: str | None = None, mode: str | None = None) -> Objective:
        return Objective(self.suspect, self.anchor, k=self.k, beta=self.beta, gamma=gamma,
                         position=position or self.position, mode=mode or self.mode)

    def points(self, batch: PromptBatch) -> torch.Tensor | None:
        return insertion_points(batch, self.position, has_bos=self.suspect.has_bos)

    def terms(self, v: torch.Tensor, batch: PromptBatch, *, gamma: torch.Tensor | None = None,
              at: torch.Tensor | None = None, pooled: torch.Tensor | None = None, groups: int = 1) -> LossTerms:
        """gamma: an optional per-row anchor weight [B] (side-by-side restarts), else self.gamma;
        at: an optional per-row insertion index [B], else this objective's position;
        pooled: an optional per-row bool [B], True where the row's restart optimises the pooled
        embedding, else every row follows this objective's mode (the caller passes None when no row
        is pooled, so the default scan never computes embeddings); groups: the rows are this many
        equal blocks, one per restart, and the pooled consensus is taken per block."""
        s = self.suspect
        if at is None:
            at = self.points(batch)
        length = min(s.max_length, batch.length + self.k)
        x = insert(batch.x_suspect, v, has_bos=s.has_bos, max_length=length, at=at)
        f = s.encode_embeddings(x)
        mask = span_mask(batch, k=self.k, has_bos=s.has_bos, length=length)
        a = assimilation(f, mask)
        self_cos = aligned_cosine(batch.f_suspect, f, batch, k=self.k, has_bos=s.has_bos, at=at)
        total = -a + self.beta * self_cos
        eos_after = (batch.tokens.eos_index + self.k).clamp(max=length - 1)
        pooled_feature = s.pooled(f, eos_after)
        f_anchor = None
        anchor_cos = torch.zeros_like(a)
        if self.anchor is not None and batch.x_anchor is not None:
            xa = insert(batch.x_anchor, v.to(batch.x_anchor.device), has_bos=s.has_bos, max_length=length,
                        at=None if at is None else at.to(batch.x_anchor.device))
            f_anchor = self.anchor.encode_embeddings(xa).to(f.device)
            anchor_cos = positionwise_cosine(f_anchor, f, mask)
        weight = self.gamma if gamma is None else gamma.to(anchor_cos.dtype)
        total = total + weight * anchor_cos
        terms = LossTerms(total=total, assimilation=a, self_cosine=self_cos, anchor_cosine=anchor_cos,
                          f_suspect=f, f_anchor=f_anchor, mask=mask, pooled=pooled_feature)
        if pooled is None and self.mode != "pooled":
            return terms
        # pooled mode: the embeddings of every prompt of a restart converge on one point (and away
        # from where the anchor sends them); tokens other than the pooled one are left free, since
        # a backdoor may move the pooled embedding alone (docs/detector.md)
        embedding = F.normalize(s.project(pooled_feature).float(), dim=-1)
        pooled_total = -(embedding * _group_consensus(embedding, groups)).sum(-1)
        anchor_embedding = None
        if f_anchor is not None:
            anchor_embedding = F.normalize(self.anchor.project(self.anchor.pooled(f_anchor, eos_after)).float(), dim=-1)
            pooled_total = pooled_total + weight * (embedding * anchor_embedding).sum(-1)
        total = pooled_total if pooled is None else torch.where(pooled, pooled_total, total)
        return replace(terms, total=total, embedding=embedding, anchor_embedding=anchor_embedding)

    def loss(self, v: torch.Tensor, batch: PromptBatch) -> torch.Tensor:
        return self.terms(v, batch).total.mean()


class Stop(str, Enum):
    """Why a restart ended."""

    MAX_STEPS = "max-steps"      # ran its whole budget
    STALLED = "stalled"          # its running loss stopped improving
    PASSING = "passing"          # the probe checks pass with room to spare: more steps change nothing
    CANNOT_PASS = "cannot-pass"  # a probe check sits far below its threshold and has stopped moving
    DECIDED = "decided"          # another restart already settled the verdict


def _restart_points(objective: Objective, batch: PromptBatch, positions: list[str],
                    batch_size: int) -> torch.Tensor | None:
    """Per-row insertion index for restart-major rows (None when every restart inserts at the start)."""
    if all(p == "start" for p in positions):
        return None
    has_bos = objective.suspect.has_bos
    parts = []
    for i, position in enumerate(positions):
        eos = batch.tokens.eos_index[i * batch_size:(i + 1) * batch_size]
        at = points(eos, position, has_bos=has_bos)
        parts.append(torch.full_like(eos, 1 if has_bos else 0) if at is None else at)
    return torch.cat(parts)


@dataclass
class InversionRun:
    v: torch.Tensor          # [k,d], detached
    gamma: float             # the anchor weight this restart ran with
    losses: list[float]      # running loss per step
    steps: int
    stop: Stop

    @property
    def stopped_early(self) -> bool:
        return self.stop is not Stop.MAX_STEPS


# checkpoint(step, {restart: its v}) -> {restart: why it stops now}; called every `check_every` steps
Checkpoint = Callable[[int, dict[int, torch.Tensor]], dict[int, Stop]]


def invert(objective: Objective, train: PromptBatch, *, gammas: list[float], steps: int, batch_size: int,
           lr: float, weight_decay: float, generator: torch.Generator, patience: int = 60, check_every: int = 10,
           checkpoint: Checkpoint | None = None, progress=None,
           positions: list[str] | None = None, modes: list[str] | None = None, scale: float = 1.0,
           max_norm: float | None = None) -> list[InversionRun]:
    """Adam on one v per restart, all restarts in one batch; the batch shrinks to the restarts still going.
    `positions`: where each restart inserts its v (default: every one at the start); `modes`: what
    each restart optimises (default: the objective's mode for all). `scale`: the size of one
    coordinate of v at the start, and the learning rate's unit; `max_norm`: each pseudo-token is
    kept within this norm after every step (None: unbounded).

    Every `check_every` steps (the only time the loop reads anything back from the device, so a
    GPU is never stalled step by step) a restart stops once its running loss has not improved for
    `patience` steps, or when `checkpoint` says so."""
    r_count = len(gammas)
    d = objective.suspect.hidden_size
    device = objective.suspect.device
    v = (scale * torch.randn(r_count, objective.k, d, generator=generator)).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([v], lr=lr * scale, weight_decay=weight_decay)
    gamma_of = torch.tensor(gammas, dtype=torch.float32, device=device)
    pooled_of = torch.tensor([m == "pooled" for m in modes], device=device) if modes else None
    n = train.x_suspect.shape[0]
    running = torch.zeros(r_count, device=device)
    pending: list[tuple[list[int], torch.Tensor]] = []  # (active restarts, their running loss) per unread step
    losses: list[list[float]] = [[] for _ in range(r_count)]
    best = [float("inf")] * r_count
    since_best = [0] * r_count
    finished: dict[int, InversionRun] = {}

    def finish(r: int, step: int, why: Stop) -> None:
        finished[r] = InversionRun(v=v[r].detach().clone(), gamma=gammas[r], losses=losses[r], steps=step, stop=why)

    step = 0
    for step in range(1, steps + 1):
        active = [r for r in range(r_count) if r not in finished]
        drawn = torch.randint(0, n, (batch_size,), generator=generator)  # on the host: no device sync
        train.fill(objective.suspect, drawn)
        batch = train.select(drawn.repeat(len(active)))  # restart-major rows, cut to the longest prompt
        rows = torch.tensor(active, device=device).repeat_interleave(batch_size)
        at = _restart_points(objective, batch, [positions[r] for r in active], batch_size) if positions else None
        # which rows optimise the pooled embedding, known on the host: None when none does
        pooled = pooled_of[rows] if modes and any(modes[r] == "pooled" for r in active) else None
        total = objective.terms(v[rows], batch, gamma=gamma_of[rows], at=at, pooled=pooled, groups=len(active)).total
        per_restart = total.view(len(active), batch_size).mean(1)
        optimizer.zero_grad(set_to_none=True)
        per_restart.sum().backward()  # restarts share no parameters: each gets its own gradient
        optimizer.step()
        if max_norm is not None:
            with torch.no_grad():
                norms = v.norm(dim=-1, keepdim=True)
                v.mul_((max_norm / norms).clamp(max=1.0))
        with torch.no_grad():
            at = torch.tensor(active, device=device)
            value = per_restart.detach().float()
            running[at] = value if step == 1 else 0.9 * running[at] + 0.1 * value
            pending.append((active, running[at].clone()))
        if progress is not None:
            progress.update(1)
        if step % check_every and step != steps:
            continue
        for act, values in pending:  # one host sync per checkpoint
            for r, value_r in zip(act, values.tolist()):
                losses[r].append(value_r)
                if value_r < best[r] - 1e-3:
                    best[r], since_best[r] = value_r, 0
                else:
                    since_best[r] += 1
        pending.clear()
        stops = {r: Stop.STALLED for r in active if since_best[r] >= patience}
        if checkpoint is not None:
            going = {r: v[r].detach() for r in active if r not in stops}
            if going:
                stops.update(checkpoint(step, going))
        for r, why in stops.items():
            finish(r, step, why)
        if progress is not None:
            lowest = min(seen[-1] for seen in losses if seen)
            progress.set_postfix(loss=f"{lowest:.3f}", running=r_count - len(finished))
        if len(finished) == r_count:
            break
    for r in range(r_count):
        if r not in finished:
            finish(r, step, Stop.MAX_STEPS)
    return [finished[r] for r in range(r_count)]
