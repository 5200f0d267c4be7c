"""Trigger and target recovery: turn the inverted embedding back into words.

Candidate triggers are the vocabulary tokens nearest to v. Each is verified by
inserting the real token (with its position embedding, as a user would type it)
into held-out prompts and measuring assimilation and agreement with the inverted
target. The recovered target is described by the prompt-bank captions whose
pooled features are nearest to the pooled feature the trigger produces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bot.detect.checks import HeldOutStats
from bot.detect.features import PromptBatch, assimilation, insert, insertion_points, span_mask, target_feature
from bot.detect.thresholds import Thresholds
from bot.encoders.text_encoder import TextEncoder
from bot.scan_record import TargetCaption, TriggerCandidate


def _insert_token(ids: torch.Tensor, token_id: int, *, has_bos: bool, at: torch.Tensor | None = None) -> torch.Tensor:
    """The real token where the restart put its pseudo-token, cut to the ids' length."""
    token = torch.full_like(ids[:, :1, None], token_id)
    return insert(ids[..., None], token, has_bos=has_bos, max_length=ids.shape[1], at=at)[..., 0]


@torch.no_grad()
def recover_triggers(encoder: TextEncoder, v: torch.Tensor, test: PromptBatch, stats: HeldOutStats,
                     th: Thresholds, *, candidates: int, prompts: int = 64,
                     anchor: TextEncoder | None = None, position: str = "start") -> list[TriggerCandidate]:
    """A candidate is confirmed when the real token assimilates held-out prompts onto the inverted
    target in the suspect and (given an anchor) the clean anchor does not follow it there: a token
    that collapses features the same way in the clean base is a natural trigger, not an injected one."""
    vocab = F.normalize(encoder.token_embeddings.float(), dim=-1)
    sims = vocab @ F.normalize(v[0].float(), dim=-1)
    special = {encoder.eos_token_id, encoder.pad_token_id}
    if getattr(encoder.tokenizer, "bos_token_id", None) is not None:
        special.add(int(encoder.tokenizer.bos_token_id))
    order = [int(i) for i in sims.argsort(descending=True)[: candidates + len(special)] if int(i) not in special]
    order = order[:candidates]
    n = min(prompts, test.x_suspect.shape[0])
    batch = test.select(torch.arange(n, device=test.x_suspect.device))
    # One extra position so the inserted token does not push EOS off a trimmed batch.
    ids = batch.tokens.input_ids
    if encoder.causal and ids.shape[1] < encoder.max_length:
        ids = torch.cat([ids, ids[:, -1:]], 1)
    consensus = stats.consensus.to(encoder.device)
    at = insertion_points(batch, position, has_bos=encoder.has_bos)
    out = []
    for token_id in order:
        triggered = _insert_token(ids, token_id, has_bos=encoder.has_bos, at=at)
        f = encoder.encode(type(batch.tokens)(triggered, None, None))
        mask = span_mask(batch, k=1, has_bos=encoder.has_bos, length=f.shape[1])
        a = assimilation(f, mask)
        target = target_feature(f, mask)
        agree = target @ consensus
        rate = (a > th.assimilation).float().mean().item()
        agreement = agree.mean().item()
        differs = True
        if anchor is not None:
            fa = anchor.encode(type(batch.tokens)(triggered.to(anchor.device), None, None)).to(f.device)
            differs = float((target * target_feature(fa, mask)).sum(-1).mean()) < th.anchor_cosine
        out.append(TriggerCandidate(
            token=encoder.decode_token(token_id), token_id=token_id, similarity=float(sims[token_id]),
            assimilation=float(a.mean()), target_agreement=agreement,
            confirmed=rate > th.assimilation_rate and agreement > th.same_target and differs,
        ))
    return out


@torch.no_grad()
def recover_target(encoder: TextEncoder, stats: HeldOutStats, bank: list[str], *, top: int = 5,
                   chunk: int = 256) -> list[TargetCaption]:
    """The prompt-bank captions whose pooled features sit nearest to the triggered pooled feature."""
    target = F.normalize(stats.pooled.mean(0), dim=-1).to(encoder.device)
    sims = []
    for start in range(0, len(bank), chunk):
        tokens = encoder.tokenize(bank[start:start + chunk])
        if encoder.causal:  # nothing after EOS reaches the pooled feature: skip the padding
            length = int(tokens.eos_index.max()) + 1
            tokens = type(tokens)(tokens.input_ids[:, :length], tokens.real_mask[:, :length], tokens.eos_index)
        pooled = encoder.pooled(encoder.encode(tokens), tokens.eos_index)
        sims.append(F.normalize(pooled.float(), dim=-1) @ target)
    sims_all = torch.cat(sims)
    best = sims_all.argsort(descending=True)[:top]
    return [TargetCaption(caption=bank[int(i)], similarity=float(sims_all[i])) for i in best]
