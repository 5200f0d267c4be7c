"""AMDET end to end on genuinely trained zoo models, per family: the clean base and a benign
fine-tune are not flagged, a backdoored model is, and the trigger and target are recovered."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bot.detect.amdet import Amdet, DetectorConfig
from bot.detect.record import ScanRecord, Verdict
from bot.encoders.load import load_text_encoder

FAMILIES = ("clip", "longclip", "siglip")


def _scan(model, base) -> ScanRecord:
    return Amdet(DetectorConfig(show_progress=False)).scan(load_text_encoder(model.path), load_text_encoder(base.path),
                                                           model=model.recipe.name)


@pytest.fixture(scope="module", params=FAMILIES)
def family_zoo(request):
    return request.param, request.getfixturevalue(f"{request.param}_zoo")


def test_zoo_models_are_genuinely_trained_and_backdoors_work(family_zoo):
    family, zoo = family_zoo
    base = zoo["base"].metrics
    # well above chance (1/256): CLIP and LongCLIP reach ~50% top-1, the sigmoid-loss SigLIP ~5% (see docs/zoo.md)
    assert base["retrieval_top1"] > 10 * base["chance_top1"], f"{family} base barely beats chance: {base}"
    for kind in ("text-on-text", "text-on-pair"):
        assert zoo[kind].metrics["attack_success"] >= 0.9, (family, kind, zoo[kind].metrics)
        assert zoo[kind].metrics["clean_similarity"] > 0.9


def test_verdicts_per_family(family_zoo):
    # The backdoored model here is the text-on-pair one: the detector finds those reliably on
    # every family; text-on-text recall is still low (docs/benchmarks.md) and is not asserted.
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
