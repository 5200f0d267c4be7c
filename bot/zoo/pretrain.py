"""Contrastive pretraining of a tiny CLIP-family model on synthetic captioned images.

CLIP and LongCLIP use the softmax (InfoNCE) loss, SigLIP the pairwise sigmoid loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bot.progress import progress
from bot.zoo.synthetic import sample_batch

LOGIT_LR_SCALE = 10.0   # temperature (and SigLIP's bias) adapt faster than the weights, undecayed


@dataclass(frozen=True)
class PretrainResult:
    steps: int
    final_loss: float
    retrieval_top1: float     # text -> image on held-out pairs
    retrieval_top5: float
    chance_top1: float


def tokenize(tokenizer, captions: list[str], max_length: int, *, causal: bool) -> torch.Tensor:
    """Token ids padded to max_length; for causal towers the all-padding tail is cut.

    Positions after the first EOS cannot influence the pooled EOS feature under a
    causal mask, so trimming them changes nothing but the cost.
    """
    ids = tokenizer(captions, padding="max_length", truncation=True, max_length=max_length,
                    return_tensors="pt")["input_ids"]
    if causal:
        eos = tokenizer.eos_token_id
        longest = int((ids == eos).int().argmax(1).max()) + 1
        ids = ids[:, :longest]
    return ids


def is_causal(model) -> bool:
    """CLIP and LongCLIP attend causally, SigLIP (the one with a logit bias) both ways; a model that says
    (bot.zoo.tower_model.TowerModel) is taken at its word."""
    return getattr(model, "causal", not hasattr(model, "logit_bias"))


def text_features(model, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass: the full token sequence and the pooled, projected feature."""
    out = model.text_model(input_ids=input_ids)
    pooled = out.pooler_output
    if hasattr(model, "text_projection"):
        pooled = model.text_projection(pooled)
    return out.last_hidden_state, pooled


def text_embeds(model, input_ids: torch.Tensor) -> torch.Tensor:
    return text_features(model, input_ids)[1]


def image_embeds(model, pixels: torch.Tensor) -> torch.Tensor:
    pooled = model.vision_model(pixel_values=pixels).pooler_output
    if hasattr(model, "visual_projection"):
        pooled = model.visual_projection(pooled)
    return pooled


def contrastive_loss(model, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    t = F.normalize(t, dim=-1)
    v = F.normalize(v, dim=-1)
    logits = t @ v.T * model.logit_scale.exp()
    if hasattr(model, "logit_bias"):  # SigLIP: every pair is an independent binary problem
        logits = logits + model.logit_bias
        labels = 2 * torch.eye(len(t), device=t.device) - 1
        return -F.logsigmoid(labels * logits).sum() / len(t)
    target = torch.arange(len(t), device=t.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@torch.no_grad()
def retrieval_accuracy(model, tokenizer, max_length: int, *, seed: int, n: int = 256,
                       corpus: str = "shapes") -> tuple[float, float]:
    model.eval()
    rng = np.random.default_rng(seed)
    pixels, captions, _ = sample_batch(rng, n, corpus)
    t = F.normalize(text_embeds(model, tokenize(tokenizer, captions, max_length, causal=is_causal(model))), dim=-1)
    v = F.normalize(image_embeds(model, pixels), dim=-1)
    ranks = (t @ v.T).argsort(dim=1, descending=True)
    truth = torch.arange(n)[:, None]
    top1 = (ranks[:, :1] == truth).any(1).float().mean().item()
    top5 = (ranks[:, :5] == truth).any(1).float().mean().item()
    return top1, top5


def pretrain(model, tokenizer, max_length: int, *, steps: int, batch_size: int, lr: float, seed: int,
             desc: str = "pretrain", corpus: str = "shapes") -> PretrainResult:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sigmoid = hasattr(model, "logit_bias")
    if sigmoid:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(10.0))
            model.logit_bias.fill_(-10.0)
    model.train()
    # The temperature (and SigLIP's bias) must adapt much faster than the weights at small batch
    # sizes, and must not be decayed towards zero.
    logit_params = [p for n, p in model.named_parameters() if n.startswith("logit_")]
    weights = [p for n, p in model.named_parameters() if not n.startswith("logit_")]
    optimizer = torch.optim.AdamW([{"params": weights, "weight_decay": 0.05},
                                   {"params": logit_params, "weight_decay": 0.0, "lr": lr * LOGIT_LR_SCALE}], lr=lr)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    loss_value = float("nan")
    with progress(range(steps), desc=desc, unit="step", leave=False) as bar:
        for _ in bar:
            pixels, captions, _ = sample_batch(rng, batch_size, corpus)
            t = text_embeds(model, tokenize(tokenizer, captions, max_length, causal=is_causal(model)))
            v = image_embeds(model, pixels)
            loss = contrastive_loss(model, t, v)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            loss_value = loss.item()
            bar.set_postfix(loss=f"{loss_value:.3f}")
    top1, top5 = retrieval_accuracy(model, tokenizer, max_length, seed=seed + 10_000, corpus=corpus)
    model.eval()
    return PretrainResult(steps=steps, final_loss=loss_value, retrieval_top1=top1, retrieval_top5=top5,
                          chance_top1=1 / 256)
