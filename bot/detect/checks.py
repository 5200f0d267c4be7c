"""The three feature checks on held-out prompts (the landscape check lives in landscape.py)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bot.detect.features import PromptBatch, assimilation, span_mask, target_feature
from bot.detect.inversion import Objective
from bot.detect.record import CheckResult
from bot.detect.thresholds import Thresholds


@dataclass
class HeldOutStats:
    assimilation: torch.Tensor          # [N] A(F') per prompt
    clean_assimilation: torch.Tensor    # [N] A(F) per prompt, no trigger
    targets: torch.Tensor               # [N,d] unit target feature per prompt (suspect)
    anchor_targets: torch.Tensor | None # [N,d] same for the anchor
    pooled: torch.Tensor                # [N,d] pooled (EOS) suspect feature with the trigger

    @property
    def consensus(self) -> torch.Tensor:
        return F.normalize(self.targets.mean(0), dim=-1)


@torch.no_grad()
def held_out_stats(objective: Objective, v: torch.Tensor, test: PromptBatch, *, chunk: int = 128) -> HeldOutStats:
    s = objective.suspect
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("a", "a0", "t", "ta", "p")}
    n = test.x_suspect.shape[0]
    for start in range(0, n, chunk):
        index = torch.arange(start, min(n, start + chunk), device=test.x_suspect.device)
        batch = test.select(index)
        terms = objective.terms(v, batch)
        parts["a"].append(terms.assimilation)
        parts["t"].append(target_feature(terms.f_suspect, terms.mask))
        if terms.f_anchor is not None:
            parts["ta"].append(target_feature(terms.f_anchor, terms.mask))
        eos_after = (batch.tokens.eos_index + objective.k).clamp(max=terms.f_suspect.shape[1] - 1)
        parts["p"].append(s.pooled(terms.f_suspect, eos_after))
        clean_mask = span_mask(batch, k=0, has_bos=s.has_bos, length=batch.f_suspect.shape[1])
        parts["a0"].append(assimilation(batch.f_suspect, clean_mask))
    return HeldOutStats(
        assimilation=torch.cat(parts["a"]).float().cpu(),
        clean_assimilation=torch.cat(parts["a0"]).float().cpu(),
        targets=torch.cat(parts["t"]).float().cpu(),
        anchor_targets=torch.cat(parts["ta"]).float().cpu() if parts["ta"] else None,
        pooled=torch.cat(parts["p"]).float().cpu(),
    )


def feature_checks(stats: HeldOutStats, th: Thresholds) -> list[CheckResult]:
    rate = (stats.assimilation > th.assimilation).float().mean().item()
    agreement = stats.targets @ stats.consensus
    same = (agreement > th.same_target).float().mean().item()
    checks = [
        CheckResult(
            name="assimilation", score=rate, threshold=th.assimilation_rate, passed=rate > th.assimilation_rate,
            description=f"share of held-out prompts whose token features become alike (A(F') > {th.assimilation:g}) "
                        "when the inverted pseudo-token is inserted",
        ),
        CheckResult(
            name="same_target", score=same, threshold=th.same_target_rate, passed=same > th.same_target_rate,
            description=f"share of prompts whose features all point to one shared target (cosine > {th.same_target:g})",
        ),
    ]
    if stats.anchor_targets is not None:
        cos = (stats.targets * stats.anchor_targets).sum(-1)
        diff = (cos < th.anchor_cosine).float().mean().item()
        checks.append(CheckResult(
            name="different_target", score=diff, threshold=th.different_target_rate,
            passed=diff > th.different_target_rate,
            description=f"share of prompts where the clean anchor, given the same pseudo-token, goes elsewhere "
                        f"(cosine < {th.anchor_cosine:g})",
        ))
    return checks
