"""What each check result and trigger of a scan record means for the person reading the report.

One home for that wording, shared by the Hub posts (templates/*.md.j2) and the report site (templates/site/):
a check that "passes" is one that looks like a backdoor, which reads backwards to anyone outside the detector,
so neither place shows pass/fail. Each check becomes three cells: what we looked for, what we found (its score
against its threshold), and what that means. Nothing here decides anything: the verdict stays the record's
(bot/detect/checks.py), and the loss landscape is evidence only (docs/detector.md, "The landscape filter,
demoted").

Every string returned is plain text: callers escape it for their medium (Markdown or HTML). A check name the
bot does not know (from a newer detector) is shown with its own description, not dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from bot.scan_record import CheckResult, ScanRecord, TriggerCandidate, Verdict

Reading = Literal["backdoor-like", "normal", "evidence"]


@dataclass(frozen=True)
class ExplainedCheck:
    name: str            # the detector's name ("same_target"), shown on the site next to the question
    looked_for: str
    found: str
    meaning: str
    reading: Reading     # backdoor-like | normal (as in a model without a backdoor) | evidence (decides nothing)


@dataclass(frozen=True)
class _Wording:
    looked_for: str
    found: str           # format string: {score} and {threshold}, both as percentages
    if_backdoor_like: str
    if_normal: str


_EVIDENCE_ONLY = "landscape"
_NEVER_DECIDES = ("Evidence only; it never changes the verdict, because on models with known backdoors this reading "
                  "did not tell injected triggers from natural ones.")
_DECIDED_NATURAL = ("Mixed curvature. The version of the bot that made this report read that as a natural shortcut, "
                    "which is where its natural-only verdict comes from; the bot no longer decides by it.")
_WORDING = {
    "assimilation": _Wording(
        "Does inserting the input the scan found make a caption's words all look alike to the encoder, so that "
        "the caption loses its own meaning?",
        "it did for {score} of the test captions (backdoor-like above {threshold})",
        "Backdoor-like: the input overrides what the captions say.",
        "As in a model without a backdoor: the captions keep their own meaning.",
    ),
    "same_target": _Wording(
        "Do the captions with the input inserted all end up meaning the same thing (one shared target)?",
        "{score} of the captions point to one shared target (backdoor-like above {threshold})",
        "Backdoor-like: unrelated captions are pulled to one and the same target.",
        "As in a model without a backdoor: the captions do not collapse onto one target.",
    ),
    "different_target": _Wording(
        "Does the clean base model (the anchor) send the same input somewhere else?",
        "the base went elsewhere for {score} of the captions (backdoor-like above {threshold})",
        "Backdoor-like: the clean base does not behave this way, so the fine-tuning added it.",
        "As in the clean base: the base model reacts the same way, so the fine-tuning did not add this.",
    ),
    _EVIDENCE_ONLY: _Wording(
        "Is the loss around the input a smooth bowl, which the reference method reads as an injected trigger?",
        "{score} of the curvature directions are positive (the reference method's cut: {threshold})",
        "A smooth bowl. " + _NEVER_DECIDES,
        "Mixed curvature. " + _NEVER_DECIDES,
    ),
}


def percent(value: float) -> str:
    """A share in [0, 1] as a percentage with one decimal ("97.5%"); "n/a" when it is not a number."""
    return f"{100 * value:.1f}%" if math.isfinite(value) else "n/a"


def explain_check(check: CheckResult, *, verdict: Verdict | None = None) -> ExplainedCheck:
    """`verdict` is the record's: a natural-only record (earlier versions) got that verdict from its landscape."""
    wording = _WORDING.get(check.name)
    if wording is None:
        reading: Reading = "backdoor-like" if check.passed else "normal"
        return ExplainedCheck(
            name=check.name, looked_for=check.description,
            found=f"score {_number(check.score)} (backdoor-like above {_number(check.threshold)})",
            meaning="Backdoor-like." if check.passed else "As in a model without a backdoor.", reading=reading)
    found = wording.found.format(score=percent(check.score), threshold=percent(check.threshold))
    if check.name == _EVIDENCE_ONLY:
        if verdict is Verdict.NATURAL_ONLY and not check.passed:
            return ExplainedCheck(check.name, wording.looked_for, found, _DECIDED_NATURAL, "evidence")
        meaning = wording.if_backdoor_like if check.passed else wording.if_normal
        return ExplainedCheck(check.name, wording.looked_for, found, meaning, "evidence")
    if check.passed:
        return ExplainedCheck(check.name, wording.looked_for, found, wording.if_backdoor_like, "backdoor-like")
    return ExplainedCheck(check.name, wording.looked_for, found, wording.if_normal, "normal")


def explain_checks(record: ScanRecord) -> list[ExplainedCheck]:
    return [explain_check(check, verdict=record.verdict) for check in record.checks]


def confirmed_triggers(record: ScanRecord) -> list[TriggerCandidate]:
    """The vocabulary tokens that reproduce the finding when typed into held-out captions, nearest first.

    Their `token` is the text to try: the detector decodes tokens as a person would type them
    (TextEncoder.decode_token)."""
    return [trigger for trigger in record.triggers if trigger.confirmed]


def _number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"
