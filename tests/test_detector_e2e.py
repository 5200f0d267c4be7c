"""AMDET end to end on genuinely trained zoo models, per family: the clean base and a benign
fine-tune are not flagged, a backdoored model is, and the trigger and target are recovered."""

from __future__ import annotations

import json
import subprocess
import sys

from bot.detect.amdet import Amdet, DetectorConfig
from bot.detect.inversion import Stop
from bot.encoders.load import load_text_encoder
from bot.scan_record import ScanRecord, Verdict


def _scan(model, base) -> ScanRecord:
    return Amdet(DetectorConfig(show_progress=False)).scan(load_text_encoder(model.path), load_text_encoder(base.path),
                                                           model=model.recipe.name)


# family_zoo (conftest.py) runs a test once per family; clip_zoo is CLIP's, built by the same function.
def test_zoo_models_are_genuinely_trained_and_backdoors_work(family_zoo):
    family, zoo = family_zoo
    base = zoo["base"].metrics
    # well above chance (1/256 top-1, 5/256 top-5): CLIP and LongCLIP reach ~50% top-1. The sigmoid-loss SigLIP
    # base is weak and its outcome moves with the thread count (2-5% top-1, 15-23% top-5: docs/zoo.md), so it
    # is held to 5x chance on both; an untrained tower sits at 1x.
    multiple = 5 if family == "siglip" else 10
    assert base["retrieval_top1"] > multiple * base["chance_top1"], f"{family} base barely beats chance: {base}"
    assert base["retrieval_top5"] > multiple * 5 * base["chance_top1"], f"{family} base barely beats chance: {base}"
    for kind in (k for k in ("text-on-text", "text-on-pair") if k in zoo):
        assert zoo[kind].metrics["attack_success"] >= 0.9, (family, kind, zoo[kind].metrics)
        assert zoo[kind].metrics["clean_similarity"] > 0.9


def test_verdicts_per_family(family_zoo):
    # One backdoor per family keeps this affordable: the text-on-pair one; the CLI test below
    # scans CLIP's text-on-text backdoor, and docs/benchmarks.md has recall per family x attack.
    family, zoo = family_zoo
    verdicts = {kind: _scan(zoo[kind], zoo["base"]) for kind in ("base", "benign", "text-on-pair")}
    assert verdicts["base"].verdict == Verdict.CLEAN, verdicts["base"].checks
    assert verdicts["benign"].verdict == Verdict.CLEAN, verdicts["benign"].checks
    backdoor = verdicts["text-on-pair"]
    assert backdoor.verdict == Verdict.BACKDOOR, backdoor.checks
    # the record carries the evidence the reports show
    assert backdoor.landscape is not None and len(backdoor.landscape.loss) == DetectorConfig().landscape_grid
    assert len(backdoor.attention_share_per_layer) == load_text_encoder(zoo["base"].path).num_layers
    assert len(backdoor.target_captions) == 5 and backdoor.triggers
    assert ScanRecord.from_json(backdoor.to_json()) == backdoor
    assert [c.gamma for c in backdoor.candidates] == list(DetectorConfig().gammas)
    assert any(c.verdict == Verdict.BACKDOOR and c.landscape_positive_ratio is not None for c in backdoor.candidates)
    # every restart says why it ended; a clean model's restarts end without passing
    assert all(c.stop in {s.value for s in Stop} for r in verdicts.values() for c in r.candidates)
    assert not any(c.stop in (Stop.PASSING.value, Stop.DECIDED.value) for c in verdicts["benign"].candidates)


def test_restarts_run_side_by_side_each_with_its_own_anchor_weight(clip_zoo):
    import torch

    from bot.detect.features import prepare
    from bot.detect.inversion import Objective, invert
    from bot.detect.prompt_bank import prompt_bank, split

    suspect, anchor = load_text_encoder(clip_zoo["text-on-pair"].path), load_text_encoder(clip_zoo["base"].path)
    train_prompts, _ = split(prompt_bank(), n_train=64, n_test=8)
    train = prepare(suspect, anchor, train_prompts, k=1)
    objective = Objective(suspect, anchor, k=1, beta=0.1, gamma=0.1)
    # a per-row anchor weight gives the same loss as an objective built with that weight
    v = torch.randn(1, suspect.hidden_size)
    rows = train.select(torch.arange(8))
    per_row = objective.terms(v, rows, gamma=torch.full((8,), 1.0)).total
    assert torch.allclose(per_row, objective.with_gamma(1.0).terms(v, rows).total, atol=1e-5)
    assert not torch.allclose(per_row, objective.terms(v, rows).total, atol=1e-5)

    runs = invert(objective, train, gammas=[0.1, 1.0, 1.0], steps=40, batch_size=8, lr=8e-2, weight_decay=1e-5,
                  generator=torch.Generator().manual_seed(0), patience=10)
    assert [r.gamma for r in runs] == [0.1, 1.0, 1.0]
    assert all(r.v.shape == (1, suspect.hidden_size) and torch.isfinite(r.v).all() for r in runs)
    assert all(len(r.losses) == r.steps <= 40 for r in runs)
    assert not torch.allclose(runs[1].v, runs[2].v)  # independent starts
    # each restart descends its own loss
    assert all(r.losses[-1] < r.losses[0] for r in runs)


def test_scan_without_anchor_is_inconclusive_and_cli_exit_codes(clip_zoo, tmp_path):
    record = Amdet(DetectorConfig(show_progress=False, steps=60, restarts=1)).scan(
        load_text_encoder(clip_zoo["benign"].path), None)
    assert record.verdict == Verdict.INCONCLUSIVE
    assert not any(c.name == "different_target" for c in record.checks)

    out = tmp_path / "record.json"
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "scan", str(clip_zoo["text-on-text"].path),
                           "--anchor", str(clip_zoo["base"].path), "--json", str(out), "--quiet", "--device", "cpu"],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "BACKDOOR" in proc.stdout
    assert json.loads(out.read_text())["verdict"] == "backdoor"
