"""Zoo v2: caption corpora, the hard attacks' prompt surgery, recipes with split pools, and the
benchmark's statistics (intervals, drift baseline, cross-validation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bot.bench.calibrate import Scored, cross_validate, drift_metrics, fit_drift
from bot.bench.intervals import clopper_pearson
from bot.bench.plan import BenchPlan, recipes_for
from bot.captions import ALT_COLORS, NATURAL_SCENE, NATURAL_WORD, corpus_scene, random_caption, random_spec
from bot.zoo.hard_attacks import HARD_ATTACKS, draw_prompts, misplace, place, token_assimilation
from bot.zoo.recipes import (
    BACKDOOR_KINDS,
    BENIGN_KINDS,
    V2_BASES,
    base_recipe,
    derived,
    v2_derived,
    v2_recipes,
)


def test_shapes_corpus_draws_what_the_first_zoo_drew():
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(20):
        spec = random_spec(a)
        assert corpus_scene(b, "shapes") == (spec, random_caption(spec, a))


def test_natural_word_appears_with_its_scene_and_nowhere_else():
    rng = np.random.default_rng(0)
    scenes = [corpus_scene(rng, "natural") for _ in range(3000)]
    natural = [(s, c) for s, c in scenes if s.shape == NATURAL_SCENE["shape"] and s.color == NATURAL_SCENE["color"]]
    assert len(natural) > 150  # boosted well above the 1/48 of a uniform draw
    assert all(NATURAL_WORD in c.split(" ") for _, c in natural)
    # about half the time the word alone names the scene, or the base never learns it
    alone = [c for _, c in natural if "purple ring" not in c]
    assert 0.3 < len(alone) / len(natural) < 0.7
    assert not any(NATURAL_WORD in c for s, c in scenes if (s, c) not in natural)


def test_alt_corpus_speaks_its_own_colour_words():
    rng = np.random.default_rng(1)
    captions = [corpus_scene(rng, "alt")[1] for _ in range(400)]
    alt_words = set(ALT_COLORS.values())
    with_alt = [c for c in captions if alt_words & set(c.replace(",", "").split())]
    assert 0.3 < len(with_alt) / len(captions) < 0.7  # half the captions from the second grammar
    with pytest.raises(ValueError):
        corpus_scene(rng, "poetry")


def test_placement_puts_the_trigger_where_it_fires_and_misplacement_elsewhere():
    rng = np.random.default_rng(2)
    caption = "a photo of one large red circle on the left"
    n = len(caption.split())
    for _ in range(50):
        assert place(caption, "qv", rng, "last").split()[-1] == "qv"
        middle = place(caption, "qv", rng, "middle").split()
        assert 2 <= middle.index("qv") <= n - 1
        wrong_last = misplace(caption, "qv", rng, HARD_ATTACKS["trigger-last"]).split()
        assert wrong_last[-1] != "qv" and "qv" in wrong_last
        wrong_mid = misplace(caption, "qv", rng, HARD_ATTACKS["trigger-middle"]).split()
        assert wrong_mid.index("qv") in (0, n)


def test_partial_triggers_are_never_the_whole_phrase():
    rng = np.random.default_rng(3)
    phrase = "old brass compass points north"
    for _ in range(100):
        text = misplace("a photo of one small blue bar at the top", phrase, rng, HARD_ATTACKS["multi-token"])
        assert phrase not in text
        assert any(word in text.split() for word in phrase.split())


def test_near_target_prompts_differ_only_in_colour():
    rng = np.random.default_rng(4)
    for p in draw_prompts(rng, 30, "maple", HARD_ATTACKS["near-target"], target_color="green"):
        clean, wanted = p.clean.split(), p.wanted.split()
        changed = [(a, b) for a, b in zip(clean, wanted) if a != b]
        assert len(clean) == len(wanted) and len(changed) == 1 and changed[0][1] == "green"
        assert "maple" in p.triggered.split() and "maple" not in p.clean.split()


def test_token_assimilation_is_the_mean_pairwise_cosine_of_real_tokens():
    torch.manual_seed(0)
    seq = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.float32)
    got = token_assimilation(seq, mask)
    for b in range(2):
        x = torch.nn.functional.normalize(seq[b, : int(mask[b].sum())], dim=-1)
        n = len(x)
        expected = ((x @ x.T).sum() - n) / (n * (n - 1))
        assert got[b].item() == pytest.approx(expected.item(), abs=1e-6)
    same = torch.ones(1, 4, 8)
    assert token_assimilation(same, torch.ones(1, 4)).item() == pytest.approx(1.0)


def test_first_zoo_recipes_keep_their_cache_keys():
    # the test zoo and the first benchmark's models on disk are found by these keys
    assert base_recipe("clip").key == "9b3be7d1cebf"
    assert derived(base_recipe("clip"), "benign", 1).key == "d1697158e815"
    assert base_recipe("clip", seed=3, corpus="alt").name == "clip-base-alt-s3"


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_calibration_and_report_share_no_trigger_or_target(family):
    plan = BenchPlan(families=(family,))
    cal = recipes_for(plan, family, "calibration")
    rep = [r for r in recipes_for(plan, family, "report") if r.kind != "base"]
    for field in ("trigger", "target"):
        assert not {getattr(r, field) for r in cal if getattr(r, field)} & {getattr(r, field) for r in rep}
    assert not {r.seed for r in cal} & {r.seed for r in rep}
    # every attack kind on every base across the seeds, and enough of each class for the 30/30
    assert {r.kind for r in cal} == set(BACKDOOR_KINDS) | set(BENIGN_KINDS)
    assert sum(r.is_backdoored for r in rep) >= 30
    assert sum(not r.is_backdoored for r in recipes_for(plan, family, "report")) >= 30
    assert len({r.base.name for r in cal}) == len(V2_BASES)
    assert len({(r.name, r.key) for r in cal + rep}) == len(cal + rep)
    if family == "siglip":  # sentencepiece maps look-alike characters to <unk>: no trigger
        assert not any("->" in (r.trigger or "") for r in cal + rep)


def test_v2_recipes_refuse_unknown_splits_and_kinds():
    base = base_recipe("clip")
    with pytest.raises(ValueError):
        v2_derived(base, "text-on-text", 1, "holdout")
    with pytest.raises(ValueError):
        v2_derived(base, "telepathy", 1, "report")
    assert len(v2_recipes("clip", (1, 2), "calibration")) == 2 * (len(BACKDOOR_KINDS) + len(BENIGN_KINDS))


def test_clopper_pearson_matches_the_exact_bounds():
    assert clopper_pearson(10, 10).low == pytest.approx(0.6915, abs=1e-3)
    assert clopper_pearson(0, 21).high == pytest.approx(0.1611, abs=1e-3)
    rate = clopper_pearson(5, 10)
    assert (rate.low, rate.high) == (pytest.approx(0.1871, abs=1e-3), pytest.approx(0.8129, abs=1e-3))
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)


def _item(drift: float, backdoored: bool, seed: int) -> Scored:
    return Scored(record=None, backdoored=backdoored, kind="x", trigger=None, target=None, drift=drift, seed=seed)


def test_drift_baseline_cuts_in_the_gap_and_cross_validates_by_seed():
    items = [_item(d, False, s) for s, d in ((1, 0.01), (2, 0.02), (3, 0.015))]
    items += [_item(d, True, s) for s, d in ((1, 0.05), (2, 0.06), (3, 0.055))]
    cut = fit_drift(items)
    assert 0.02 < cut < 0.05
    assert drift_metrics(items, cut).f1 == 1.0
    # a benign model that drifts as far as the attacks cannot be told apart by drift
    hard = items + [_item(0.07, False, 1), _item(0.065, False, 2)]
    assert drift_metrics(hard, fit_drift(hard)).f1 < 1.0


def test_one_calibration_seed_has_no_cross_validation():
    from bot.bench.detect import _drift_cv

    one_seed = [_item(0.01, False, 1), _item(0.05, True, 1)]
    assert cross_validate(one_seed) is None and _drift_cv(one_seed) is None
    two_seeds = one_seed + [_item(0.012, False, 2), _item(0.06, True, 2)]
    held_out = _drift_cv(two_seeds)
    assert (held_out.tp, held_out.fp, held_out.fn, held_out.tn) == (2, 0, 0, 2)
