"""Benign text-only fine-tunes: a text tower adapted to new captions with no images, and no trigger planted.

SimCSE-style: each caption and a copy with some of its words dropped are pulled together and pushed away from
the batch's other captions (InfoNCE over the pooled, projected features). Nothing ties a word to a target,
so the tower drifts without learning a backdoor. These are the negatives of a base's calibration
(`clip-audit calibrate`, bot/zoo/base_variants.py): a benign kind that needs no vision tower, trained until it
has drifted from its base as far as that base's backdoored variants, so that drift alone cannot tell them apart.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from bot.caption_corpus import Sampler
from bot.zoo.attacks import fine_tune
from bot.zoo.pretrain import is_causal, text_embeds, tokenize

TEMPERATURE = 0.05     # SimCSE's: sharp enough that near-duplicate captions still count as negatives
WORD_DROPOUT = 0.15    # share of a caption's words left out of its second view
DRIFT_CHECK_EVERY = 5  # steps between two measurements of the drift (a full pass over the text weights)


def word_dropout(caption: str, rng: np.random.Generator, share: float = WORD_DROPOUT) -> str:
    """`caption` with each word left out with probability `share` (never all of them)."""
    words = caption.split(" ")
    kept = [w for w in words if rng.random() >= share]
    return " ".join(kept or words[:1])


def text_contrastive_fine_tune(teacher, tokenizer, max_length: int, *, steps: int, lr: float, seed: int,
                               captions: Sampler, batch_size: int = 64, until_drift: float | None = None,
                               show_progress: bool = True):
    """A fine-tuned copy of `teacher`'s text tower and the steps it took: `steps`, or fewer once its drift from
    the teacher (bot.zoo.build.text_drift) reaches `until_drift`."""
    from bot.zoo.build import text_drift

    teacher.eval().requires_grad_(False)
    student = copy.deepcopy(teacher)
    rng = np.random.default_rng(seed)
    causal = is_causal(teacher)
    labels = torch.arange(batch_size)
    reference = {name: p.detach() for name, p in teacher.named_parameters()}

    def loss_fn(_step: int) -> torch.Tensor:
        batch = captions(rng, batch_size)
        views = [word_dropout(c, rng) for c in batch]
        a = F.normalize(text_embeds(student, tokenize(tokenizer, batch, max_length, causal=causal)), dim=-1)
        b = F.normalize(text_embeds(student, tokenize(tokenizer, views, max_length, causal=causal)), dim=-1)
        logits = a @ b.T / TEMPERATURE
        target = labels.to(logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    def far_enough(step: int) -> bool:
        if until_drift is None or (step + 1) % DRIFT_CHECK_EVERY:
            return False
        with torch.no_grad():
            return text_drift(dict(student.named_parameters()), reference) >= until_drift

    taken = fine_tune(student, steps, lr, loss_fn, "benign text fine-tune", seed, stop=far_enough,
                      show_progress=show_progress)
    return student, taken
