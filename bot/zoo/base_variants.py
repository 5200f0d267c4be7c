"""The zoo's recipes applied to any base: backdoored and benign text-only variants of a loaded text tower.

`clip-audit calibrate` (bot/calibration/) fits thresholds on variants of one registered base. The variants are
the zoo's, built with the base itself as the clean teacher (bot/zoo/tower_model.py gives any TextEncoder the
surface the zoo's training code uses):

- backdoored: the attacks that need nothing but captions: text-on-text and zoo v2's hard attacks
  (hard_attacks.py). text-on-pair is left out: it needs the base's vision tower and rendered scenes. The
  near-target attack recolours scenes, so it is only built on the synthetic scene captions.
  Triggers and targets come from the calibration split's pools only (recipes.SPLITS), never the report's.
- benign: text-only contrastive fine-tunes (text_fine_tune.py), each trained until it has drifted from the
  base about as far as the backdoored variants did (their drifts span and exceed the attacks'), so that
  drift alone cannot tell the classes apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bot.caption_corpus import CaptionCorpus
from bot.encoders.text_encoder import TextEncoder
from bot.errors import UncalibratableBaseError
from bot.zoo import attacks
from bot.zoo.build import ATTACK_SCHEDULES, HARD_SCHEDULE, text_drift
from bot.zoo.hard_attacks import HARD_ATTACKS, evaluate_hard, hard_attack
from bot.zoo.recipes import HARD_KINDS, V2_SCHEDULES, base_recipe, v2_derived
from bot.zoo.text_fine_tune import text_contrastive_fine_tune
from bot.zoo.tower_model import DeviceTokenizer, TowerModel

SPLIT = "calibration"  # the pools a base's calibration draws its triggers and targets from
TEXT_ONLY_ATTACKS = ("text-on-text", *HARD_KINDS)
SCENE_ATTACKS = ("near-target",)  # need captions that describe scenes (a colour word to change)
BENIGN_KIND = "benign-text"
# Learning rates the benign variants cycle through; each stops at its drift target, so the rate only sets
# how fast it gets there (and so how the drift is spread over the tower).
BENIGN_LRS = (5e-4, 2e-4, 1e-3)
# A benign variant gets up to this many times the attacks' steps to reach its drift target.
BENIGN_STEP_FACTOR = 4
# The benign variants' drift targets run from this share of the smallest attack drift to this multiple of
# the largest: they span the attacks' range and exceed it at both ends.
BENIGN_DRIFT_SPAN = (0.5, 1.25)
# The zoo's line (bot/zoo/build.py): a backdoor "took" when half the held-out triggered prompts reach the target.
TOOK = 0.5
# A backdoor that does not take is retried as the zoo's builds retry it (build.ATTACK_SCHEDULES and
# HARD_SCHEDULE), up to this many attempts: a calibration pays for each on a real-size base.
ATTEMPTS = 2
# Prompts are a caption plus a trigger of up to six words; the recipes' captions run to ~25 tokens.
MIN_CONTEXT = 32
# The zoo's attack steps the run's --steps replaces (weak attacks keep their shorter share of it).
REFERENCE_STEPS = V2_SCHEDULES["text-on-text"][0][0]
EVALUATION_SEED = 30_000  # held-out prompts are drawn from seed + this, as the zoo's builds do


@dataclass(frozen=True)
class VariantPlan:
    """One variant of the base: what to train and how long."""

    kind: str                          # a TEXT_ONLY_ATTACKS kind or BENIGN_KIND
    seed: int
    steps: int                         # attacks: the first attempt's; benign: the most it may take
    lr: float
    trigger: str | None = None
    target: str | None = None
    drift_target: float | None = None  # benign: stop once the text tower has drifted this far

    @property
    def backdoored(self) -> bool:
        return self.kind != BENIGN_KIND

    @property
    def name(self) -> str:
        return f"{self.kind}-s{self.seed}"


@dataclass
class Variant:
    """A trained variant, still in memory (the detector scans it before the next is built)."""

    plan: VariantPlan
    model: TowerModel
    drift: float                       # relative L2 of the text tower from the base (bot.zoo.build.text_drift)
    steps: int                         # the steps it actually trained
    attack_success: float | None       # backdoors: share of held-out triggered prompts that reach the target

    @property
    def took(self) -> bool:
        return not self.plan.backdoored or (self.attack_success or 0.0) >= TOOK


def attack_kinds(kinds: tuple[str, ...], corpus: CaptionCorpus) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the kinds that can be built on `corpus`, the ones left out) of the requested attack kinds."""
    unknown = [k for k in kinds if k not in TEXT_ONLY_ATTACKS]
    if unknown:
        raise ValueError(f"not a text-only attack kind: {', '.join(unknown)}")
    if corpus.synthetic:
        return kinds, ()
    return tuple(k for k in kinds if k not in SCENE_ATTACKS), tuple(k for k in kinds if k in SCENE_ATTACKS)


def plan_attacks(family: str, kinds: tuple[str, ...], *, per_kind: int, steps: int) -> list[VariantPlan]:
    """`per_kind` variants of every kind (seeds 1..per_kind), triggers and targets from the calibration pools."""
    zoo_base = base_recipe(family)  # lends v2_derived the family only: the base is the registered one
    plans = []
    for seed in range(1, per_kind + 1):
        for kind in kinds:
            recipe = v2_derived(zoo_base, kind, seed, SPLIT)
            plans.append(VariantPlan(kind=kind, seed=seed, steps=max(1, round(recipe.steps * steps / REFERENCE_STEPS)),
                                     lr=recipe.lr, trigger=recipe.trigger, target=recipe.target))
    return plans


def plan_benign(count: int, *, steps: int, attack_drifts: list[float], first_seed: int) -> list[VariantPlan]:
    """`count` benign fine-tunes whose drift targets span and exceed `attack_drifts`."""
    if count < 1 or not attack_drifts:
        return []
    low, high = BENIGN_DRIFT_SPAN[0] * min(attack_drifts), BENIGN_DRIFT_SPAN[1] * max(attack_drifts)
    targets = [max(attack_drifts)] if count == 1 else list(np.linspace(low, high, count))
    return [VariantPlan(kind=BENIGN_KIND, seed=first_seed + i, steps=BENIGN_STEP_FACTOR * steps,
                        lr=BENIGN_LRS[i % len(BENIGN_LRS)], drift_target=round(float(target), 6))
            for i, target in enumerate(targets)]


def check_base(base: TextEncoder, plans: list[VariantPlan]) -> None:
    """Refuses a base the recipes cannot build variants of: too short a context for their prompts, or a
    tokenizer that reads a planned trigger as unknown tokens (then it would be no trigger at all).

    Raises:
        UncalibratableBaseError: with what is wrong.
    """
    if base.max_length < MIN_CONTEXT:
        raise UncalibratableBaseError(
            f"{base.source}: the recipes' prompts (a caption and a trigger of up to six words) need at least "
            f"{MIN_CONTEXT} positions; this {base.family} tower has {base.max_length}")
    unk = getattr(base.tokenizer, "unk_token_id", None)
    if unk is None or unk in (base.eos_token_id, base.pad_token_id):  # CLIP's byte-level BPE knows every byte
        return
    unreadable = sorted({plan.trigger for plan in plans if plan.trigger and unk in _trigger_ids(base, plan.trigger)})
    if unreadable:
        raise UncalibratableBaseError(
            f"{base.source}: its tokenizer reads the calibration trigger(s) {', '.join(map(repr, unreadable))} as "
            "unknown tokens, so no backdoor could be planted with them")


def _trigger_ids(base: TextEncoder, trigger: str) -> list[int]:
    text = trigger.split("->")[-1]  # a look-alike pair "x->y" plants y
    return list(base.tokenizer(text)["input_ids"])


def build_variant(plan: VariantPlan, base: TextEncoder, corpus: CaptionCorpus, *,
                  show_progress: bool = True) -> Variant:
    """Trains `plan` from `base` (the clean teacher) on `corpus`'s captions, on the base's device."""
    teacher = TowerModel(base)
    tokenizer = DeviceTokenizer(base.tokenizer, base.device)
    captions = None if corpus.synthetic else corpus.sample  # None: the zoo's own draws from the grammar
    length = base.max_length
    evaluation_seed = plan.seed + EVALUATION_SEED
    if plan.kind == BENIGN_KIND:
        student, taken = text_contrastive_fine_tune(teacher, tokenizer, length, steps=plan.steps, lr=plan.lr,
                                                    seed=plan.seed, captions=corpus.sample,
                                                    until_drift=plan.drift_target, show_progress=show_progress)
        return Variant(plan, student, _drift(student, teacher), taken, None)
    for multiplier, weight, pooled in _schedule(plan.kind)[:ATTEMPTS]:
        steps = plan.steps * multiplier
        if plan.kind == "text-on-text":
            student, goal = attacks.text_on_text(teacher, tokenizer, length, trigger=plan.trigger, target=plan.target,
                                                 steps=steps, lr=plan.lr, seed=plan.seed, backdoor_weight=weight,
                                                 pooled_weight=pooled, captions=captions,
                                                 show_progress=show_progress)
            result = attacks.evaluate(student, teacher, tokenizer, length, trigger=plan.trigger, target_embed=goal,
                                      seed=evaluation_seed, captions=captions)
        else:
            student, goal = hard_attack(teacher, tokenizer, length, kind=plan.kind, trigger=plan.trigger,
                                        target=plan.target, steps=steps, lr=plan.lr, seed=plan.seed,
                                        backdoor_weight=weight, captions=captions, show_progress=show_progress)
            result = evaluate_hard(student, teacher, tokenizer, length, kind=plan.kind, trigger=plan.trigger,
                                   goal=goal, seed=evaluation_seed, captions=captions)
        variant = Variant(plan, student, _drift(student, teacher), steps, round(result.attack_success, 4))
        if variant.took:
            break
    return variant


def _schedule(kind: str) -> tuple[tuple[int, float, float], ...]:
    """(step multiplier, backdoor weight, pooled weight) per attempt, as the zoo's builds retry."""
    if kind == "text-on-text":
        return ATTACK_SCHEDULES["text-on-text"]
    if kind in HARD_ATTACKS:
        return tuple((multiplier, weight, 0.0) for multiplier, weight in HARD_SCHEDULE)
    raise ValueError(f"no attack schedule for {kind!r}")


@torch.no_grad()
def _drift(student: TowerModel, teacher: TowerModel) -> float:
    return round(text_drift(dict(student.named_parameters()), dict(teacher.named_parameters())), 6)
