"""The scan's speed mechanics (docs/performance.md): per-batch trimming changes no statistic, held-out rows come
back in their prompts' order, restarts stop at checkpoints for the reasons the referee gives.

These need no trained model (they test arithmetic and control flow, not detection): a tiny randomly
initialised CLIP text tower is enough. Detection with them lives in test_detector_e2e.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bot.detect.amdet import DetectorConfig, Referee
from bot.detect.checks import held_out_stats
from bot.detect.features import PromptBatch, prepare
from bot.detect.inversion import Objective, Stop, invert
from bot.detect.prompt_bank import prompt_bank
from bot.detect.thresholds import PAPER
from bot.encoders.text_encoder import TextEncoder
from bot.encoders.tower import TextTower, TowerSpec
from bot.scan_record import CheckResult


def _tiny(family: str = "clip", seed: int = 0) -> TextEncoder:
    from bot.encoders.tokenizers import load_clip_tokenizer

    torch.manual_seed(seed)
    spec = TowerSpec(vocab_size=49408, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                     max_positions=77)
    return TextEncoder(family=family, tower=TextTower.random(spec, seed=seed), projection=torch.nn.Linear(32, 32),
                       tokenizer=load_clip_tokenizer(None, max_length=77), source=f"tiny-{seed}", format="test")


@pytest.fixture(scope="module")
def pair() -> tuple[TextEncoder, TextEncoder]:
    return _tiny(seed=0), _tiny(seed=1)


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    bank = prompt_bank()
    # a short and a long prompt first, so a selection of rows 0..1 has a long tail to cut
    by_length = sorted(bank[:200], key=len)
    return [by_length[0], by_length[-1], *bank[200:230]]


def _untrimmed(batch: PromptBatch, rows: torch.Tensor) -> PromptBatch:
    t = batch.tokens
    return replace(batch, tokens=type(t)(t.input_ids[rows], t.real_mask[rows], t.eos_index[rows]),
                   x_suspect=batch.x_suspect[rows], x_anchor=batch.x_anchor[rows], f_suspect=batch.f_suspect[rows])


def test_a_selection_is_cut_to_its_longest_prompt_and_every_statistic_is_unchanged(pair, prompts) -> None:
    suspect, anchor = pair
    batch = prepare(suspect, anchor, prompts, k=1)
    short = torch.tensor([0, 2, 3])
    trimmed = batch.select(short)
    assert trimmed.length == int(batch.tokens.eos_index[short].max()) + 1 < batch.length
    full = _untrimmed(batch, short)
    objective = Objective(suspect, anchor, k=1, beta=0.1, gamma=1.0)
    v = torch.randn(1, 32)
    cut, whole = objective.terms(v, trimmed), objective.terms(v, full)
    for name in ("total", "assimilation", "self_cosine", "anchor_cosine"):
        assert torch.allclose(getattr(cut, name), getattr(whole, name), atol=1e-5), name
    # the long prompt keeps its full length
    assert batch.select(torch.tensor([1])).length == int(batch.tokens.eos_index[1]) + 1


def test_clean_features_prepared_by_length_match_one_prompt_at_a_time(pair, prompts) -> None:
    suspect, _ = pair
    batch = prepare(suspect, None, prompts, k=1)
    for i in (0, 1, 7):
        alone = prepare(suspect, None, [prompts[i]], k=1)
        n = int(alone.tokens.eos_index[0]) + 1
        assert torch.allclose(batch.f_suspect[i, :n], alone.f_suspect[0, :n], atol=1e-5)


def test_lazy_clean_features_are_computed_for_the_rows_drawn_and_match_eager_ones(pair, prompts) -> None:
    suspect, anchor = pair
    eager = prepare(suspect, anchor, prompts, k=1)
    lazy = prepare(suspect, anchor, prompts, k=1, lazy=True)
    assert bool(lazy.pending.all()) and float(lazy.f_suspect.abs().sum()) == 0.0
    drawn = torch.tensor([1, 4, 4, 9])
    lazy.fill(suspect, drawn)
    assert sorted(torch.nonzero(~lazy.pending).flatten().tolist()) == [1, 4, 9]
    for i in (1, 4, 9):
        n = int(eager.tokens.eos_index[i]) + 1
        assert torch.allclose(lazy.f_suspect[i, :n], eager.f_suspect[i, :n], atol=1e-5)
    assert float(lazy.f_suspect[0].abs().sum()) == 0.0  # never drawn, never computed
    # the inversion fills what it draws: after a few steps every row it drew has features
    objective = Objective(suspect, anchor, k=1, beta=0.1, gamma=1.0)
    invert(objective, lazy, gammas=[1.0], steps=3, batch_size=4, lr=8e-2, weight_decay=0.0,
           generator=torch.Generator().manual_seed(0))
    filled = torch.nonzero(~lazy.pending).flatten()
    assert 3 < len(filled) <= 3 + 3 * 4
    assert all(float(lazy.f_suspect[int(i)].abs().sum()) > 0 for i in filled)


def test_a_bidirectional_tower_keeps_every_position(pair, prompts) -> None:
    suspect, anchor = pair
    batch = replace(prepare(suspect, anchor, prompts, k=1), causal=False)
    assert batch.select(torch.tensor([0])).length == batch.length


def test_held_out_rows_come_back_in_their_prompts_order(pair, prompts) -> None:
    suspect, anchor = pair
    test = prepare(suspect, anchor, prompts, k=1)
    objective = Objective(suspect, anchor, k=1, beta=0.1, gamma=1.0)
    v = torch.randn(1, 32)
    chunked = held_out_stats(objective, v, test, chunk=4)  # chunks taken shortest first
    for i in (0, 1, 5):
        one = held_out_stats(objective, v, test.select(torch.tensor([i])))
        assert torch.allclose(chunked.assimilation[i], one.assimilation[0], atol=1e-5)
        assert torch.allclose(chunked.targets[i], one.targets[0], atol=1e-5)


def test_restarts_stop_at_checkpoints_for_the_reason_given(pair, prompts) -> None:
    suspect, anchor = pair
    train = prepare(suspect, anchor, prompts, k=1)
    objective = Objective(suspect, anchor, k=1, beta=0.1, gamma=0.1)
    seen: list[tuple[int, list[int]]] = []

    def checkpoint(step: int, going: dict[int, torch.Tensor]) -> dict[int, Stop]:
        seen.append((step, sorted(going)))
        return {0: Stop.PASSING} if step == 20 else {}

    runs = invert(objective, train, gammas=[0.1, 1.0], steps=35, batch_size=4, lr=8e-2, weight_decay=0.0,
                  generator=torch.Generator().manual_seed(0), patience=10**6, check_every=10, checkpoint=checkpoint)
    # every 10 steps and at the last one; a stopped restart is not asked about again
    assert seen == [(10, [0, 1]), (20, [0, 1]), (30, [1]), (35, [1])]
    assert (runs[0].stop, runs[0].steps, len(runs[0].losses)) == (Stop.PASSING, 20, 20)
    assert (runs[1].stop, runs[1].steps, len(runs[1].losses)) == (Stop.MAX_STEPS, 35, 35)
    assert runs[0].stopped_early and not runs[1].stopped_early


def _checks(*scores: float) -> list[CheckResult]:
    names = ("assimilation", "same_target", "different_target")
    thresholds = (0.7, 0.9, 0.5)
    return [CheckResult(name=n, score=s, threshold=t, passed=s > t, description="")
            for n, s, t in zip(names, scores, thresholds)]


def test_the_referee_passes_with_room_to_spare_and_gives_up_only_on_a_persistent_shortfall() -> None:
    cfg = DetectorConfig(pass_margin=0.5, give_up_ratio=0.25, give_up_checks=3)
    referee = Referee(cfg, objective=None, probe=None, th=PAPER, gammas=[0.1])  # type: ignore[arg-type]
    # passing needs every check half-way from its threshold to 1: different target 0.75, same target 0.95
    assert referee.judge(0, _checks(1.0, 0.96, 0.8)) is Stop.PASSING
    assert referee.judge(0, _checks(1.0, 0.92, 0.8)) is None          # passes, but not with room to spare
    # giving up: a check under a quarter of its threshold at three checkpoints in a row
    assert referee.judge(1, _checks(1.0, 0.7, 0.0)) is None
    assert referee.judge(1, _checks(1.0, 0.7, 0.1)) is None
    assert referee.judge(1, _checks(1.0, 0.7, 0.3)) is None           # 0.3/0.5 climbs out: the count restarts
    assert referee.judge(1, _checks(1.0, 0.7, 0.0)) is None
    assert referee.judge(1, _checks(1.0, 0.7, 0.0)) is None
    assert referee.judge(1, _checks(1.0, 0.7, 0.0)) is Stop.CANNOT_PASS


def test_restarts_with_other_positions_and_modes_batch_like_separate_objectives(pair, prompts) -> None:
    from bot.detect.inversion import _restart_points

    suspect, anchor = pair
    batch = prepare(suspect, anchor, prompts[:6], k=2)
    objective = Objective(suspect, anchor, k=2, beta=0.1, gamma=1.0)
    plans = [("start", "tokens", 0.1), ("end", "pooled", 1.0), ("middle", "pooled", 1.0)]
    v = torch.randn(len(plans), 2, 32)
    rows = torch.arange(len(plans)).repeat_interleave(6)
    both = batch.select(torch.arange(6).repeat(len(plans)))
    at = _restart_points(objective, both, [p for p, _, _ in plans], 6)
    together = objective.terms(v[rows], both, gamma=torch.tensor([g for _, _, g in plans])[rows], at=at,
                               pooled=torch.tensor([m == "pooled" for _, m, _ in plans])[rows],
                               groups=len(plans)).total
    for r, (position, mode, gamma) in enumerate(plans):
        alone = objective.with_gamma(gamma, position, mode).terms(v[r], batch.select(torch.arange(6))).total
        assert torch.allclose(together[r * 6:(r + 1) * 6], alone, atol=1e-5), (position, mode)


def test_attention_share_reads_each_prompts_own_insertion_point(pair, prompts) -> None:
    suspect, _ = pair
    tokens = suspect.tokenize(prompts[:3])
    x = suspect.embed(tokens.input_ids)
    per_row = suspect.attention_to(x, torch.tensor([1, 3, 5]))
    for row, position in enumerate((1, 3, 5)):
        alone = suspect.attention_to(x[row:row + 1], position)
        assert all(torch.allclose(a[row], b[0]) for a, b in zip(per_row, alone))


def test_pseudo_tokens_start_at_token_size_and_stay_inside_their_bound(pair, prompts) -> None:
    suspect, anchor = pair
    train = prepare(suspect, anchor, prompts, k=2)
    objective = Objective(suspect, anchor, k=2, beta=0.1, gamma=1.0)
    runs = invert(objective, train, gammas=[0.1, 1.0], steps=12, batch_size=4, lr=8e-2, weight_decay=0.0,
                  generator=torch.Generator().manual_seed(0), scale=0.01, max_norm=0.05,
                  positions=["start", "end"], modes=["tokens", "pooled"])
    norms = torch.stack([run.v.norm(dim=-1) for run in runs])
    assert norms.max() <= 0.05 + 1e-6
    free = invert(objective, train, gammas=[1.0], steps=12, batch_size=4, lr=8e-2, weight_decay=0.0,
                  generator=torch.Generator().manual_seed(0))
    assert free[0].v.norm(dim=-1).min() > 1.0  # unbounded and unit-scaled: the reference's behaviour
