"""`clip-audit scan --format sarif`: a valid SARIF 2.1.0 log for every verdict, one result per finding, the
tool's name, version and rules (the end-to-end runs are in test_scan_hub.py and test_wheel_install.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from records import SHA_A, hostile_record, make_record
from sarif_check import check_sarif

from bot import __version__
from bot.cli.sarif import BACKDOOR, CARD_MISMATCH, INCONCLUSIVE, NATURAL, RULES, sarif_log
from bot.scan_record import Verdict

WHERE = f"https://huggingface.co/acme/clip-vit-b/tree/{SHA_A}"
EXPECTED = {Verdict.BACKDOOR: [(BACKDOOR.id, "error")], Verdict.CLEAN: [],
            Verdict.INCONCLUSIVE: [(INCONCLUSIVE.id, "warning")], Verdict.NATURAL_ONLY: [(NATURAL.id, "note")]}


def _log(record) -> dict:
    return json.loads(json.dumps(sarif_log(record, artifact_uri=WHERE)))  # what a dashboard reads


@pytest.mark.parametrize("verdict", list(Verdict))
def test_every_verdict_is_a_valid_log_with_one_result_per_finding(verdict: Verdict) -> None:
    log = _log(make_record(verdict))
    results = check_sarif(log)
    assert [(r["ruleId"], r["level"]) for r in results] == EXPECTED[verdict]
    driver = log["runs"][0]["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("clip-audit", __version__)
    # A clean run still lists every rule, so that a dashboard closes what an earlier scan found.
    assert [rule["id"] for rule in driver["rules"]] == [rule.id for rule in RULES]
    assert all(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == WHERE for r in results)
    assert log["runs"][0]["properties"]["verdict"] == verdict.value


def test_a_backdoor_result_says_what_was_found_and_whether_a_trigger_was_confirmed() -> None:
    record = make_record(Verdict.BACKDOOR)
    (result,) = check_sarif(_log(record))
    text = result["message"]["text"]
    assert text.startswith(f"acme/clip-vit-b@{SHA_A[:12]}: a textual backdoor was found")
    assert "Confirmed trigger tokens: 'cf</w>'." in text and "mn</w>" not in text
    assert "a photo of a banana on a table" in text and "same_target 0.995 (passed at 0.900)" in text
    assert result["properties"] == {"verdict": "backdoor", "model": "acme/clip-vit-b", "revision": SHA_A,
                                    "anchor": "openai/clip-vit-base-patch32"}

    unconfirmed = [replace(trigger, confirmed=False) for trigger in record.triggers]
    (result,) = check_sarif(_log(replace(record, triggers=unconfirmed)))
    assert "No single vocabulary token was confirmed as the trigger" in result["message"]["text"]


def test_a_card_that_disagrees_with_the_weights_is_a_finding_of_its_own() -> None:
    record = make_record(Verdict.CLEAN)
    finding = "the card names openai/clip-vit-large-patch14 as the base model; the weights are nearest to another"
    record = replace(record, anchor_choice=replace(make_record(Verdict.INCONCLUSIVE).anchor_choice, finding=finding))
    (result,) = check_sarif(_log(record))
    assert (result["ruleId"], result["level"]) == (CARD_MISMATCH.id, "warning")
    assert result["message"]["text"].endswith(finding)


def test_an_uploaders_hostile_text_stays_inside_the_json_strings() -> None:
    log = sarif_log(hostile_record(), artifact_uri=WHERE)
    text = json.dumps(log)
    assert text.isascii() and "\n" not in text  # bidi controls and line breaks are escaped
    results = check_sarif(json.loads(text))
    assert [r["ruleId"] for r in results] == [BACKDOOR.id, CARD_MISMATCH.id]
