"""`clip-audit scan --format sarif`: a scan record as a SARIF 2.1.0 log, for code-scanning dashboards.

One run of one tool; one result per finding: a backdoor (error), a scan that could not decide (warning: the model
was not checked), a model card that names another base than the weights (warning), a natural trigger-like
direction in an older record (note). A clean scan has no results; its run still lists the rules, so that a
dashboard closes what an earlier scan of the same model found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot import __version__
from bot.scan_record import ScanRecord, Verdict

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
TOOL_NAME = "clip-audit"


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    short: str   # one line: what the finding is
    full: str    # what it means for the reader
    level: str   # SARIF level: error | warning | note


BACKDOOR = Rule("CLIP-AUDIT-001", "TextualBackdoor", "A hidden textual backdoor in the text encoder",
                "An inverted pseudo-token (a few token-sized vectors) makes every prompt's features collapse onto "
                "one shared target that the clean base model does not produce: a trigger was injected. Do not "
                "use this revision; pin an earlier commit or retrain from the clean base.", "error")
INCONCLUSIVE = Rule("CLIP-AUDIT-002", "InconclusiveScan", "The scan could not decide",
                    "No trusted clean base (anchor) near enough to the weights was available to compare with, so "
                    "the model was not checked for a backdoor.", "warning")
CARD_MISMATCH = Rule("CLIP-AUDIT-003", "CardDisagreesWithWeights", "The model card names another base than the "
                     "weights", "The base model the card claims is not the trusted base the weights are nearest "
                     "to; the card was not used to choose what the model is compared with.", "warning")
NATURAL = Rule("CLIP-AUDIT-004", "NaturalTriggerDirection", "A trigger-like direction that looked natural",
               "An earlier version of the detector found a trigger-like direction and judged it the base model's "
               "own quirk (its loss landscape); the landscape no longer decides, so scan this model again.", "note")
RULES = (BACKDOOR, INCONCLUSIVE, CARD_MISMATCH, NATURAL)


def _rule_object(rule: Rule) -> dict[str, Any]:
    return {"id": rule.id, "name": rule.name, "shortDescription": {"text": rule.short},
            "fullDescription": {"text": rule.full}, "defaultConfiguration": {"level": rule.level}}


def _what(record: ScanRecord) -> str:
    return f"{record.model}@{record.revision[:12]}" if record.revision else record.model


def _checks(record: ScanRecord) -> str:
    return "; ".join(f"{c.name} {c.score:.3f} ({'passed' if c.passed else 'failed'} at {c.threshold:.3f})"
                     for c in record.checks)


def _backdoor_message(record: ScanRecord) -> str:
    confirmed = [t.token for t in record.triggers if t.confirmed]
    parts = [f"{_what(record)}: a textual backdoor was found (compared with {record.anchor or 'no anchor'})."]
    if confirmed:
        parts.append("Confirmed trigger tokens: " + ", ".join(repr(token) for token in confirmed[:5]) + ".")
    else:
        parts.append("No single vocabulary token was confirmed as the trigger; the inverted one is a mix of tokens.")
    if record.target_captions:
        parts.append(f"Prompts collapse onto a target like {record.target_captions[0].caption!r}.")
    parts.append(f"Checks: {_checks(record)}.")
    if record.calibration:
        parts.append(f"Thresholds: {record.calibration}.")
    return " ".join(parts)


def _findings(record: ScanRecord) -> list[tuple[Rule, str]]:
    found: list[tuple[Rule, str]] = []
    if record.verdict is Verdict.BACKDOOR:
        found.append((BACKDOOR, _backdoor_message(record)))
    elif record.verdict is Verdict.INCONCLUSIVE:
        choice = record.anchor_choice
        why = choice.reason if choice is not None and choice.reason else "no trusted base near enough to compare with"
        found.append((INCONCLUSIVE, f"{_what(record)} was not checked: {why}."))
    elif record.verdict is Verdict.NATURAL_ONLY:
        found.append((NATURAL, f"{_what(record)}: a trigger-like direction judged natural. Checks: {_checks(record)}."))
    if record.anchor_choice is not None and record.anchor_choice.finding:
        found.append((CARD_MISMATCH, f"{_what(record)}: {record.anchor_choice.finding}"))
    return found


def sarif_log(record: ScanRecord, *, artifact_uri: str) -> dict[str, Any]:
    """The SARIF log of one scan; `artifact_uri` is where the scanned model is (a local folder, a Hub URL)."""
    location = {"physicalLocation": {"artifactLocation": {"uri": artifact_uri}}}
    index = {rule.id: i for i, rule in enumerate(RULES)}
    results = [{"ruleId": rule.id, "ruleIndex": index[rule.id], "level": rule.level, "message": {"text": text},
                "locations": [location],
                "properties": {"verdict": record.verdict.value, "model": record.model, "revision": record.revision,
                               "anchor": record.anchor}}
               for rule, text in _findings(record)]  # fmt: skip
    driver = {"name": TOOL_NAME, "version": __version__, "semanticVersion": __version__,
              "rules": [_rule_object(rule) for rule in RULES]}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION,
            "runs": [{"tool": {"driver": driver}, "results": results,
                      "properties": {"verdict": record.verdict.value, "calibration": record.calibration}}]}
