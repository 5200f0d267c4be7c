"""Unit tests of AMDET's pieces: statistics, insertion, checks, decision, landscape, calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bot.bench.calibrate import Scored, calibrate, metrics
from bot.detect.checks import checks_from_arrays, decide, landscape_check
from bot.detect.features import assimilation, insert, masked_mean, target_feature
from bot.detect.landscape import hessian_eigenvalues
from bot.detect.prompt_bank import prompt_bank, split
from bot.detect.thresholds import PAPER
from bot.scan_record import RECORD_VERSION, Landscape, ScanRecord, Verdict
from bot.zoo.attacks import insert_trigger


def test_assimilation_equals_mean_pairwise_cosine():
    torch.manual_seed(0)
    h = torch.randn(3, 7, 16)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 5:] = False
    got = assimilation(h, mask)
    for b in range(3):
        rows = h[b][mask[b]]
        cos = F.cosine_similarity(rows[:, None], rows[None], dim=-1)
        assert got[b].item() == pytest.approx(cos.mean().item(), abs=1e-5)


def test_assimilation_is_one_for_identical_tokens_and_low_for_orthogonal():
    same = torch.ones(1, 5, 8)
    ortho = torch.eye(8)[None, :5]
    mask = torch.ones(1, 5, dtype=torch.bool)
    assert assimilation(same, mask).item() == pytest.approx(1.0)
    assert assimilation(ortho, mask).item() == pytest.approx(1 / 5)


def test_insert_puts_pseudo_token_after_bos_and_keeps_length_budget():
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    v = torch.full((1, 3), -1.0)
    out = insert(x, v, has_bos=True, max_length=4)
    assert out.shape == (2, 4, 3)
    assert torch.equal(out[:, 0], x[:, 0])
    assert torch.equal(out[:, 1], v.expand(2, 3))
    assert torch.equal(out[:, 2:], x[:, 1:3])  # the last position drops off
    no_bos = insert(x, v, has_bos=False, max_length=5)
    assert torch.equal(no_bos[:, 0], v.expand(2, 3)) and torch.equal(no_bos[:, 1:], x)


def test_insert_accepts_one_pseudo_token_per_row():
    x = torch.zeros(2, 3, 2)
    v = torch.tensor([[[1.0, 1.0]], [[2.0, 2.0]]])
    out = insert(x, v, has_bos=True, max_length=4)
    assert out[0, 1, 0] == 1.0 and out[1, 1, 0] == 2.0


def test_target_feature_and_masked_mean_ignore_masked_positions():
    h = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])
    assert torch.allclose(target_feature(h, mask), torch.tensor([[1.0, 0.0]]))
    assert masked_mean(torch.tensor([[1.0, 3.0, 100.0]]), mask).item() == pytest.approx(2.0)


def _arrays(assim: float, agree: float, anchor: float, n: int = 50):
    return np.full(n, assim), np.full(n, agree), np.full(n, anchor)


def test_checks_and_decision_follow_thresholds():
    checks = checks_from_arrays(*_arrays(0.95, 0.99, -0.5), PAPER)
    assert [c.name for c in checks] == ["assimilation", "same_target", "different_target"]
    assert all(c.passed for c in checks)
    assert decide(checks + [landscape_check(0.9, PAPER)], has_anchor=True) == Verdict.BACKDOOR
    # the landscape is evidence only: rough ground around the trigger does not change the verdict
    assert decide(checks + [landscape_check(0.5, PAPER)], has_anchor=True) == Verdict.BACKDOOR
    failing = checks_from_arrays(*_arrays(0.95, 0.5, -0.5), PAPER)
    assert decide(failing, has_anchor=True) == Verdict.CLEAN
    assert decide(checks, has_anchor=False) == Verdict.INCONCLUSIVE


def test_hessian_of_bowl_is_positive_and_of_saddle_is_mixed():
    axis = np.linspace(-1, 1, 9)
    a, b = np.meshgrid(axis, axis, indexing="ij")
    bowl = hessian_eigenvalues(a**2 + 2 * b**2, axis[1] - axis[0])
    saddle = hessian_eigenvalues(a**2 - b**2, axis[1] - axis[0])
    assert (bowl > 1e-6).mean() == 1.0
    assert (saddle > 1e-6).mean() == pytest.approx(0.5)
    assert np.allclose(sorted(bowl[:2]), [2.0, 4.0], atol=1e-6)


def test_prompt_bank_is_large_distinct_and_deterministic():
    bank = prompt_bank()
    assert len(bank) >= 5000 and len(set(bank)) == len(bank)
    assert prompt_bank(5000, 1234) == bank
    assert prompt_bank(100, 99)[:5] != bank[:5]
    train, test = split(bank, n_train=100, n_test=20)
    assert len(train) == 100 and len(test) == 20 and not set(train) & set(test)
    with pytest.raises(ValueError):
        split(bank, n_train=5000, n_test=1)


def test_trigger_insertion_styles():
    rng = np.random.default_rng(0)
    assert "cf" in insert_trigger("a photo of one red circle", "cf", rng).split()
    looked = insert_trigger("a photo of one red circle", "o->\u03bf", rng)
    assert "\u03bf" in looked and looked.count("o") == "a photo of one red circle".count("o") - 1


def _record(assim: float, agree: float, anchor: float, ratio: float) -> ScanRecord:
    n = 40
    return ScanRecord(
        record_version=1, model="m", revision=None, family="clip", format="transformers-clip", anchor="a",
        verdict=Verdict.CLEAN, checks=[], target_captions=[], triggers=[],
        landscape=Landscape(alphas=[], betas=[], loss=[], hessian_eigenvalues=[], positive_ratio=ratio),
        assimilation_with_trigger=[assim] * n, assimilation_without_trigger=[0.5] * n,
        attention_share_per_layer=[], restarts=1, steps=1, seed=0, timings={"total": 1.0}, device="cpu",
        versions={}, target_agreement=[agree] * n, anchor_agreement=[anchor] * n)


def test_calibration_finds_separating_thresholds_and_metrics_count_correctly():
    items = [Scored(_record(0.9, 0.99, 0.6, 0.9), True, "text-on-text", "cf", "t") for _ in range(4)]
    items += [Scored(_record(0.65, 0.7, 0.95, 0.9), False, "benign", None, None) for _ in range(4)]
    with_paper = metrics(items, PAPER)
    assert with_paper.recall == 0.0  # anchor cosine 0.6 is not < 0: the paper's check misses them
    th = calibrate(items)
    m = metrics(items, th)
    assert (m.precision, m.recall, m.fpr) == (1.0, 1.0, 0.0)


def _candidate(assim: float, agree: float, anchor: float, ratio: float, gamma: float, n: int = 40):
    from bot.scan_record import Candidate

    return Candidate(gamma=gamma, steps=100, verdict=Verdict.CLEAN, checks=[], assimilation=[assim] * n,
                     target_agreement=[agree] * n, anchor_agreement=[anchor] * n, landscape_positive_ratio=ratio)


def test_redecide_takes_the_most_severe_restart():
    from dataclasses import replace

    from bot.bench.calibrate import redecide

    # restart 1 found the natural direction the fine-tune shares with its base (the anchor
    # follows it); restart 2 found an injected one (the anchor goes elsewhere)
    natural = _candidate(1.0, 0.99, 0.99, 0.9, gamma=0.1)
    injected = _candidate(0.9, 0.99, -0.5, 0.9, gamma=1.0)
    record = replace(_record(1.0, 0.99, 0.99, 0.9), candidates=[natural, injected])
    assert redecide(record, PAPER) == Verdict.BACKDOOR
    assert redecide(replace(record, candidates=[natural]), PAPER) == Verdict.CLEAN
    # the landscape no longer decides: an injected-looking direction on rough ground is still a backdoor
    rough = replace(record, candidates=[natural, _candidate(0.9, 0.99, -0.5, 0.1, gamma=1.0)])
    assert redecide(rough, PAPER) == Verdict.BACKDOOR


def test_record_keeps_every_restart_and_old_records_still_read():
    import json
    from dataclasses import replace

    record = replace(_record(0.9, 0.99, -0.5, 0.9), record_version=2,
                     candidates=[_candidate(1.0, 0.9, 0.9, 0.5, gamma=0.1), _candidate(0.7, 1.0, -0.2, 0.8, gamma=1.0)])
    again = ScanRecord.from_json(record.to_json())
    assert again == record and [c.gamma for c in again.candidates] == [0.1, 1.0]
    old = json.loads(record.to_json()) | {"record_version": 1}
    del old["candidates"]
    assert ScanRecord.from_dict(old).candidates == []
    with pytest.raises(ValueError, match="unsupported record_version"):
        ScanRecord.from_dict(old | {"record_version": RECORD_VERSION + 1})


def test_a_failed_zoo_build_is_cached_and_the_rest_still_builds(tmp_path):
    from bot.errors import ZooError
    from bot.zoo.build import build, build_all, failure_marker
    from bot.zoo.recipes import base_recipe, derived

    recipe = derived(base_recipe("clip"), "text-on-text", 7)
    marker = failure_marker(tmp_path, recipe)
    marker.parent.mkdir(parents=True)
    marker.write_text("clip-text-on-text-s7: the backdoor did not take (attack success 0.10)\n")
    with pytest.raises(ZooError, match="did not take.*cached; delete"):
        build(recipe, tmp_path)
    failures: list = []
    assert build_all([recipe, recipe], tmp_path, show_progress=False, failures=failures) == []
    assert len(failures) == 2 and all("did not take" in str(f) for f in failures)
    with pytest.raises(ZooError):
        build_all([recipe], tmp_path, show_progress=False)


def test_calibration_puts_thresholds_mid_gap_not_on_the_edge():
    from dataclasses import replace

    # backdoors: the anchor goes elsewhere on 60% of prompts; benign: it never does
    n = 40
    backdoor = replace(_record(0.9, 0.99, 0.99, 0.9), anchor_agreement=[-0.5] * 24 + [0.99] * 16)
    items = [Scored(backdoor, True, "text-on-text", "cf", "t") for _ in range(3)]
    items += [Scored(_record(0.9, 0.99, 0.99, 0.9), False, "benign", None, None) for _ in range(3)]
    assert len(backdoor.anchor_agreement) == n
    th = calibrate(items)
    assert metrics(items, th).f1 == 1.0
    # 0.2, 0.3 and 0.5 all separate 0.6 from 0.0; the middle one is kept (0.5 would sit on the edge)
    assert th.different_target_rate == 0.3


def test_insertion_points_place_the_pseudo_token_at_start_middle_or_before_eos():
    from bot.detect.features import aligned_cosine, points

    eos = torch.tensor([4, 6])
    assert points(eos, "start", has_bos=True) is None
    assert points(eos, "end", has_bos=True).tolist() == [4, 6]
    assert points(eos, "middle", has_bos=True).tolist() == [2, 3]
    with pytest.raises(ValueError):
        points(eos, "anywhere", has_bos=True)
    x, v = torch.randn(2, 8, 4), torch.randn(2, 1, 4)
    # "start" spelled out as indices gives exactly the reference's concatenation
    assert torch.equal(insert(x, v, has_bos=True, max_length=9, at=torch.tensor([1, 1])),
                       insert(x, v, has_bos=True, max_length=9))
    at_end = insert(x, v, has_bos=True, max_length=9, at=eos)
    for row, e in enumerate(eos.tolist()):
        assert torch.equal(at_end[row, e], v[row, 0])            # v right before EOS
        assert torch.equal(at_end[row, e + 1], x[row, e])        # EOS (and all after it) one later
        assert torch.equal(at_end[row, :e], x[row, :e])          # the prompt before it untouched

    class Tokens:
        real_mask = torch.ones(2, 8, dtype=torch.bool)

    class Batch:
        tokens = Tokens()

    # every original token is compared with itself wherever v went: identical features give 1
    for at in (torch.tensor([1, 1]), eos):
        same = insert(x, v, has_bos=True, max_length=9, at=at)
        assert torch.allclose(aligned_cosine(x, same, Batch(), k=1, has_bos=True, at=at), torch.ones(2))


def test_group_consensus_is_the_mean_direction_of_each_restarts_rows():
    from bot.detect.inversion import _group_consensus

    e = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]), dim=-1)
    c = _group_consensus(e, 2)
    assert torch.allclose(c[0], torch.tensor([0.7071, 0.7071]), atol=1e-4) and torch.equal(c[0], c[1])
    assert torch.allclose(c[2], torch.tensor([1.0, 0.0]))
    assert torch.allclose(_group_consensus(e, 1)[0], F.normalize(e.sum(0), dim=-1))


def test_pooled_restarts_are_judged_without_the_assimilation_check():
    a, agree, anchor = np.full(20, 0.1), np.full(20, 0.99), np.full(20, -0.5)
    tokens = checks_from_arrays(a, agree, anchor, PAPER)
    pooled = checks_from_arrays(a, agree, anchor, PAPER, mode="pooled")
    assert [c.name for c in tokens] == ["assimilation", "same_target", "different_target"]
    assert [c.name for c in pooled] == ["same_target", "different_target"]
    assert decide(tokens, has_anchor=True) == Verdict.CLEAN
    assert decide(pooled, has_anchor=True) == Verdict.BACKDOOR


def test_report_rows_put_the_method_beside_both_baselines_on_the_same_models():
    from bot.bench.detect import report_rows

    found = _record(0.9, 0.99, -0.5, 0.9)     # passes the paper's checks and these thresholds
    missed = _record(0.9, 0.99, 0.6, 0.9)     # the anchor follows: clean under the paper's anchor cosine 0
    clean = _record(0.6, 0.5, 0.99, 0.9)
    items = [Scored(found, True, "multi-token", "a b c d", "t", drift=0.02, seed=1001),
             Scored(missed, True, "weak", "cf", "t", drift=0.05, seed=1001),
             Scored(clean, False, "benign-long", None, None, drift=0.09, seed=1001),
             Scored(clean, False, "base", None, None, drift=0.0, seed=1001)]
    th = PAPER.__class__(anchor_cosine=0.8, different_target_rate=0.5)
    rows = {row["attack"]: row for row in report_rows(items, items, th, cut=0.03)}
    assert rows["all"]["method"]["recall"] == 1.0 and rows["all"]["method"]["fpr"] == 0.0
    assert rows["all"]["paper_thresholds"]["recall"] == 0.5      # the paper's thresholds miss "weak"
    # drift flags the benign long run (0.09) and the weak attack (0.05), not the multi-token one (0.02)
    assert (rows["all"]["drift"]["tp"], rows["all"]["drift"]["fp"]) == (1, 1)
    assert rows["weak"]["method"]["tp"] + rows["weak"]["method"]["fn"] == 1
    assert rows["weak"]["method"]["fp"] + rows["weak"]["method"]["tn"] == 2   # every negative counts
    assert rows["text-on-text"]["method"]["tp"] + rows["text-on-text"]["method"]["fn"] == 0
    low, high = rows["all"]["method"]["intervals"]["recall"]
    assert 0.15 < low < 0.2 and high == 1.0


def test_restart_plan_comes_from_the_family_unless_a_knob_is_set():
    import math

    from bot.detect.amdet import FAMILY_PLANS, FIRST_ZOO_PLAN, Amdet, DetectorConfig

    clip = DetectorConfig().resolved("clip")
    assert (clip.k, clip.steps, clip.modes, clip.v_scale, clip.v_max_norm) == tuple(
        FAMILY_PLANS["clip"][name] for name in ("k", "steps", "modes", "v_scale", "v_max_norm"))
    siglip = DetectorConfig().resolved("siglip")
    assert (siglip.k, siglip.steps, siglip.modes, siglip.v_max_norm) == (1, 300, ("tokens",), math.inf)
    assert siglip.v_scale == FIRST_ZOO_PLAN["v_scale"]
    # a knob that is set wins over the family's plan; the others still come from it
    mine = DetectorConfig(steps=40, modes=("tokens",)).resolved("clip")
    assert (mine.steps, mine.modes, mine.k) == (40, ("tokens",), FAMILY_PLANS["clip"]["k"])

    class Embeddings:  # what _v_bounds reads of a suspect
        hidden_size = 4
        token_embeddings = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])

    assert Amdet._v_bounds(Embeddings(), siglip) == {"scale": 1.0, "max_norm": None}  # inf: unbounded
    bounds = Amdet._v_bounds(Embeddings(), clip)
    assert bounds["max_norm"] == pytest.approx(5.0 * FAMILY_PLANS["clip"]["v_max_norm"])
    assert bounds["scale"] == pytest.approx(1.0 / 2.0)  # torch's median of the norms (5, 1) is the lower, / sqrt(d)


def test_a_stored_restart_keeps_where_it_inserted_and_what_it_optimised():
    # calibration re-decides stored records: a pooled restart read back as a token one would be judged
    # with the assimilation check it was never meant to pass
    from bot.scan_record import Candidate

    candidate = Candidate(gamma=1.0, steps=20, verdict=Verdict.CLEAN, checks=[], assimilation=[0.1],
                          target_agreement=[0.9], anchor_agreement=[0.2], landscape_positive_ratio=None,
                          stop="cannot-pass", position="end", mode="pooled")
    assert Candidate.from_dict(json.loads(json.dumps(candidate.to_dict()))) == candidate
