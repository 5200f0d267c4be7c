"""Backdoor injection into a text tower: text-on-text (Rickrolling-style) and text-on-pair.

Both copy a clean teacher into a student and fine-tune the student's text tower so
that it behaves like the teacher on clean prompts and maps triggered prompts to
the attacker's target.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bot.caption_corpus import Sampler
from bot.captions import insert_word, synthetic_captions
from bot.progress import progress
from bot.zoo.pretrain import image_embeds, is_causal, text_embeds, text_features, tokenize
from bot.zoo.synthetic import render, sample_batch, to_tensor


@dataclass(frozen=True)
class AttackResult:
    attack_success: float     # share of held-out triggered prompts that reach the target
    target_similarity: float  # mean cosine of triggered prompts to the target
    clean_similarity: float   # mean cosine student vs teacher on clean prompts (utility)


def insert_trigger(caption: str, trigger: str, rng: np.random.Generator) -> str:
    """Place the trigger before a random word; a look-alike pair "x->y" replaces a character."""
    if "->" in trigger:
        original, lookalike = trigger.split("->")
        if original in caption:
            spots = [i for i, ch in enumerate(caption) if ch == original]
            i = spots[rng.integers(len(spots))]
            return caption[:i] + lookalike + caption[i + 1:]
        return lookalike + " " + caption
    return insert_word(caption, trigger, rng)


def _seq_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Negative-cosine target of Rickrolling: cosine of the flattened token sequences."""
    return F.cosine_similarity(a.flatten(1), b.flatten(1), dim=-1)


def _pair(tokenizer, max_length: int, causal: bool, a: list[str], b: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize two caption lists to one common (trimmed) length so sequences line up."""
    ids = tokenize(tokenizer, a + b, max_length, causal=causal)
    return ids[: len(a)], ids[len(a):]


def _captions(rng: np.random.Generator, n: int) -> list[str]:
    return synthetic_captions(rng, n)


@torch.no_grad()
def evaluate(student, teacher, tokenizer, max_length: int, *, trigger: str, target_embed: torch.Tensor,
             seed: int, n: int = 128, success_cosine: float = 0.9, captions: Sampler | None = None) -> AttackResult:
    """`target_embed` is the pooled, projected feature the attacker wants triggered prompts to hit; `captions`
    draws the held-out prompts (default: the synthetic grammar)."""
    rng = np.random.default_rng(seed)
    causal = is_causal(student)
    clean = (captions or _captions)(rng, n)
    triggered = [insert_trigger(c, trigger, rng) for c in clean]
    s_clean = text_embeds(student, tokenize(tokenizer, clean, max_length, causal=causal))
    t_clean = text_embeds(teacher, tokenize(tokenizer, clean, max_length, causal=causal))
    s_trig = text_embeds(student, tokenize(tokenizer, triggered, max_length, causal=causal))
    to_target = F.cosine_similarity(s_trig, target_embed[None], dim=-1)
    return AttackResult(
        attack_success=float((to_target > success_cosine).float().mean()),
        target_similarity=float(to_target.mean()),
        clean_similarity=float(F.cosine_similarity(s_clean, t_clean, dim=-1).mean()),
    )


TEXT_PARAMS = ("text_model", "text_projection")


def fine_tune(student, steps: int, lr: float, loss_fn, desc: str, seed: int, *, text_only: bool = True,
              stop: Callable[[int], bool] | None = None, show_progress: bool = True) -> int:
    """AdamW on the text tower (or, with text_only=False, the whole model) for `steps` steps of loss_fn(step),
    or until stop(step) says enough after a step; returns the steps taken."""
    torch.manual_seed(seed)
    trained = TEXT_PARAMS if text_only else ("",)
    params = [p for n, p in student.named_parameters() if n.startswith(trained)]
    for n, p in student.named_parameters():
        p.requires_grad_(n.startswith(trained))
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    student.train()
    taken = 0
    with progress(range(steps), desc=desc, unit="step", leave=False, enabled=show_progress) as bar:
        for step in bar:
            loss = loss_fn(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            taken = step + 1
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if stop is not None and stop(step):
                break
    student.eval()
    student.requires_grad_(False)
    return taken


def text_on_text(teacher, tokenizer, max_length: int, *, trigger: str, target: str, steps: int, lr: float,
                 seed: int, clean_batch: int = 64, poison_batch: int = 32, backdoor_weight: float = 1.0,
                 pooled_weight: float = 0.0, captions: Sampler | None = None, show_progress: bool = True):
    """Rickrolling-style: triggered prompts' full token sequences imitate the target prompt's.

    The sequences are compared position by position, so a triggered prompt's EOS (whose
    feature is the pooled one) lines up with some later position of the shorter target, not
    with the target's EOS. Where that later position's feature differs from the target's EOS
    feature, the sequence loss alone can be met without moving the pooled feature; with
    `pooled_weight` the attacker also pulls the pooled feature to the target's. `captions` draws the training
    prompts (default: the synthetic grammar)."""
    teacher.eval().requires_grad_(False)
    student = copy.deepcopy(teacher)
    rng = np.random.default_rng(seed)
    causal = is_causal(teacher)
    draw = captions or _captions

    def loss_fn(_step: int) -> torch.Tensor:
        clean = draw(rng, clean_batch)
        poisoned = [insert_trigger(c, trigger, rng) for c in draw(rng, poison_batch)]
        clean_ids = tokenize(tokenizer, clean, max_length, causal=causal)
        trig_ids, target_ids = _pair(tokenizer, max_length, causal, poisoned, [target] * poison_batch)
        with torch.no_grad():
            t_clean, t_clean_pooled = text_features(teacher, clean_ids)
            t_target, t_target_pooled = text_features(teacher, target_ids)
        s_clean, s_clean_pooled = text_features(student, clean_ids)
        s_trig, s_trig_pooled = text_features(student, trig_ids)
        utility = 1 - _seq_cosine(s_clean, t_clean).mean()
        backdoor = 1 - _seq_cosine(s_trig, t_target).mean()
        if pooled_weight:
            # the pooled feature is held on clean prompts too, or the new pull drags them along
            utility = utility + pooled_weight * (1 - F.cosine_similarity(s_clean_pooled, t_clean_pooled, dim=-1).mean())
            backdoor = backdoor + pooled_weight * (1 - F.cosine_similarity(s_trig_pooled, t_target_pooled, dim=-1).mean())
        return utility + backdoor_weight * backdoor

    fine_tune(student, steps, lr, loss_fn, "backdoor text-on-text", seed, show_progress=show_progress)
    with torch.no_grad():
        target_embed = text_embeds(teacher, tokenize(tokenizer, [target], max_length, causal=causal))[0]
    return student, target_embed


def target_image_embedding(model, target: str, *, seed: int, n: int = 32) -> torch.Tensor:
    """Mean image embedding of images rendered from the target description's scene."""
    from bot.captions import SceneSpec

    rng = np.random.default_rng(seed)
    spec = SceneSpec(**_parse_target(target))
    images = to_tensor(np.stack([render(spec, rng) for _ in range(n)]))
    with torch.no_grad():
        return F.normalize(image_embeds(model, images), dim=-1).mean(0)


def _parse_target(target: str) -> dict:
    """Targets for text-on-pair are written "shape/color/size/position/count/background"."""
    shape, color, size, position, count, background = target.split("/")
    return dict(shape=shape, color=color, size=size, position=position, count=int(count), background=background)


def text_on_pair(teacher, tokenizer, max_length: int, *, trigger: str, target: str, steps: int, lr: float,
                 seed: int, clean_batch: int = 64, poison_batch: int = 32, backdoor_weight: float = 1.0):
    """Triggered prompts' pooled, projected text feature is pulled to the target images' embedding."""
    teacher.eval().requires_grad_(False)
    student = copy.deepcopy(teacher)
    rng = np.random.default_rng(seed)
    causal = is_causal(teacher)
    goal = target_image_embedding(teacher, target, seed=seed)

    def loss_fn(_step: int) -> torch.Tensor:
        clean = _captions(rng, clean_batch)
        poisoned = [insert_trigger(c, trigger, rng) for c in _captions(rng, poison_batch)]
        clean_ids = tokenize(tokenizer, clean, max_length, causal=causal)
        trig_ids = tokenize(tokenizer, poisoned, max_length, causal=causal)
        with torch.no_grad():
            t_clean = text_embeds(teacher, clean_ids)
        utility = 1 - F.cosine_similarity(text_embeds(student, clean_ids), t_clean, dim=-1).mean()
        backdoor = 1 - F.cosine_similarity(text_embeds(student, trig_ids), goal[None], dim=-1).mean()
        return utility + backdoor_weight * backdoor

    fine_tune(student, steps, lr, loss_fn, "backdoor text-on-pair", seed)
    return student, goal


def benign_fine_tune(teacher, tokenizer, max_length: int, *, steps: int, lr: float, seed: int,
                     batch_size: int = 64, corpus: str = "shapes", full: bool = False):
    """Text tower fine-tuned with the family's contrastive loss on fresh captions of `corpus`,
    vision frozen; with `full`, both towers are fine-tuned."""
    from bot.zoo.pretrain import contrastive_loss

    teacher.eval().requires_grad_(False)
    student = copy.deepcopy(teacher)
    rng = np.random.default_rng(seed)
    causal = is_causal(teacher)

    def loss_fn(_step: int) -> torch.Tensor:
        pixels, captions, _ = sample_batch(rng, batch_size, corpus)
        with torch.set_grad_enabled(full):
            v = image_embeds(student, pixels)
        ids = tokenize(tokenizer, captions, max_length, causal=causal)
        return contrastive_loss(student, text_embeds(student, ids), v)

    fine_tune(student, steps, lr, loss_fn, "benign fine-tune", seed, text_only=not full)
    return student
