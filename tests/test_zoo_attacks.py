"""The zoo's backdoor injection on a genuinely trained tower (the LongCLIP test base)."""

from __future__ import annotations

from bot.zoo import attacks
from bot.zoo.build import load_tokenizer, load_trained

# On the LongCLIP base this target is one the sequence loss alone does not carry over to the
# pooled feature: the triggered prompt's EOS lines up with a padding position of the shorter
# target, whose feature is not the target's EOS feature (docs/zoo.md).
TARGET = "a photo of one large white ring in the center"


def _attack(teacher, tokenizer, pooled_weight: float) -> attacks.AttackResult:
    student, goal = attacks.text_on_text(teacher, tokenizer, 248, trigger="cf", target=TARGET, steps=25, lr=5e-4,
                                         seed=3, clean_batch=32, poison_batch=16, pooled_weight=pooled_weight)
    return attacks.evaluate(student, teacher, tokenizer, 248, trigger="cf", target_embed=goal, seed=9, n=64)


def test_pooled_term_makes_a_text_on_text_backdoor_take_without_costing_clean_utility(zoo_of):
    base = zoo_of("longclip")["base"]
    teacher = load_trained(base.path, "longclip")
    tokenizer = load_tokenizer(base.path, "longclip")
    sequence_only = _attack(teacher, tokenizer, 0.0)
    with_pooled = _attack(teacher, tokenizer, 1.0)
    # 25 steps: attack success 0.41 -> 0.95 on a base built on 2 threads, 0.78 -> 0.98 on a 1-thread build (the
    # base's weights move with the thread count); the zoo counts >= 0.5 as taken
    assert with_pooled.attack_success >= 0.9, (sequence_only, with_pooled)
    assert with_pooled.attack_success > sequence_only.attack_success, (sequence_only, with_pooled)
    assert with_pooled.target_similarity > sequence_only.target_similarity + 0.03, (sequence_only, with_pooled)
    assert with_pooled.clean_similarity > sequence_only.clean_similarity - 0.05, (sequence_only, with_pooled)

