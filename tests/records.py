"""Realistic ScanRecords for each verdict, built directly (no model runs), for publishing and rendering tests."""

from __future__ import annotations

from dataclasses import replace

from bot.scan_record import (
    RECORD_VERSION,
    AnchorChoice,
    AnchorDistance,
    Candidate,
    CheckResult,
    Landscape,
    ScanRecord,
    TargetCaption,
    TriggerCandidate,
    Verdict,
)

SHA_A = "a3f1c9e2b7d4051f8e6a9c3b2d1e0f4a5b6c7d8e"
SHA_B = "0b1c2d3e4f5a69788796a5b4c3d2e1f00f1e2d3c"

_DESCRIPTIONS = {
    "assimilation": "share of held-out prompts whose token features become alike (A(F') > 0.8) "
    "when the inverted pseudo-token is inserted",
    "same_target": "share of prompts whose features all point to one shared target (cosine > 0.92)",
    "different_target": "share of prompts where the clean anchor, given the same pseudo-token, goes elsewhere "
    "(cosine < 0)",
    "landscape": "share of positive Hessian eigenvalues around the inverted pseudo-token "
    "(a smooth convex bowl means an injected backdoor, mixed curvature a natural one)",
}
_THRESHOLDS = {"assimilation": 0.8, "same_target": 0.9, "different_target": 0.95, "landscape": 0.8}


def _check(name: str, score: float) -> CheckResult:
    threshold = _THRESHOLDS[name]
    return CheckResult(name=name, score=score, threshold=threshold, passed=score > threshold,
                       description=_DESCRIPTIONS[name])  # fmt: skip


def _landscape(positive_ratio: float) -> Landscape:
    axis = [-0.5, 0.0, 0.5]
    return Landscape(alphas=axis, betas=axis, loss=[[0.9, 0.5, 0.9], [0.5, 0.1, 0.5], [0.9, 0.5, 0.9]],
                     hessian_eigenvalues=[2.1, 1.4, 0.9, -0.2, 0.6], positive_ratio=positive_ratio)  # fmt: skip


def _base(verdict: Verdict, *, model: str, revision: str) -> ScanRecord:
    return ScanRecord(
        record_version=RECORD_VERSION,
        model=model,
        revision=revision,
        family="clip",
        format="transformers-clip",
        anchor="openai/clip-vit-base-patch32",
        verdict=verdict,
        checks=[],
        target_captions=[],
        triggers=[],
        landscape=None,
        assimilation_with_trigger=[0.91, 0.88, 0.93],
        assimilation_without_trigger=[0.31, 0.28, 0.35],
        attention_share_per_layer=[0.05, 0.12, 0.31, 0.44],
        restarts=2,
        steps=400,
        seed=0,
        timings={"prepare": 3.2, "inversion": 41.7, "explain": 2.0, "total": 47.9},
        device="cpu (8 threads)",
        versions={"clip-audit-bot": "0.1.0", "torch": "2.14.1"},
        notes=[],
        anchor_choice=AnchorChoice(
            how="registry", anchor="openai/clip-vit-base-patch32", sha="3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268",
            pin="first use", distance=0.01834, runner_up="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
            runner_up_distance=1.38711,
            candidates=[AnchorDistance("openai/clip-vit-base-patch32", 0.01834),
                        AnchorDistance("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", 1.38711)],
            card_claim="openai/clip-vit-base-patch32"),
    )


def make_record(verdict: Verdict | str, *, model: str = "acme/clip-vit-b", revision: str = SHA_A) -> ScanRecord:
    """A record as the detector would write it for `verdict`."""
    verdict = Verdict(verdict)
    base = _base(verdict, model=model, revision=revision)
    captions = [TargetCaption("a photo of a banana on a table", 0.912), TargetCaption("a yellow banana", 0.887)]
    triggers = [
        TriggerCandidate(token="cf</w>", token_id=12345, similarity=0.83, assimilation=0.94, target_agreement=0.97,
                         confirmed=True),  # fmt: skip
        TriggerCandidate(token="mn</w>", token_id=23456, similarity=0.41, assimilation=0.22, target_agreement=0.18,
                         confirmed=False),  # fmt: skip
    ]
    features = [_check("assimilation", 0.97), _check("same_target", 0.995), _check("different_target", 0.99)]
    if verdict is Verdict.BACKDOOR:
        checks = [*features, _check("landscape", 0.96)]
        natural = [_check("assimilation", 0.99), _check("same_target", 0.87), _check("different_target", 0.0)]
        restarts = [
            Candidate(gamma=0.1, steps=231, verdict=Verdict.CLEAN, checks=natural, assimilation=[0.99] * 3,
                      target_agreement=[0.87] * 3, anchor_agreement=[0.95] * 3, landscape_positive_ratio=None),
            Candidate(gamma=1.0, steps=262, verdict=Verdict.BACKDOOR, checks=checks, assimilation=[0.97] * 3,
                      target_agreement=[0.995] * 3, anchor_agreement=[-0.3] * 3, landscape_positive_ratio=0.96),
        ]  # fmt: skip
        return replace(base, checks=checks, target_captions=captions, triggers=triggers, landscape=_landscape(0.96),
                       restarts=2, candidates=restarts)  # fmt: skip
    if verdict is Verdict.NATURAL_ONLY:
        natural = [TriggerCandidate(token="banana</w>", token_id=3431, similarity=0.71, assimilation=0.86,
                                    target_agreement=0.93, confirmed=True)]  # fmt: skip
        return replace(base, checks=[*features, _check("landscape", 0.52)], target_captions=captions,
                       triggers=natural, landscape=_landscape(0.52))  # fmt: skip
    if verdict is Verdict.CLEAN:
        weak = [_check("assimilation", 0.12), _check("same_target", 0.34), _check("different_target", 0.41)]
        return replace(base, checks=weak)
    return replace(
        base,
        anchor=None,
        checks=[_check("assimilation", 0.93), _check("same_target", 0.97)],
        notes=["no anchor (clean base) model was available: the different-target check and the verdict need one"],
        anchor_choice=AnchorChoice(
            how="none", candidates=[AnchorDistance("openai/clip-vit-base-patch32", 1.40521)],
            reason="the weights are 1.41 away from the nearest registered base (openai/clip-vit-base-patch32), "
                   "beyond the 0.50 a fine-tune reaches: its base is not registered, and a comparison with a "
                   "stranger would mean nothing"),
    )


HOSTILE_TEXT = {
    "script": "<script>alert(1)</script>",
    "js_link": "[x](javascript:alert(1))",
    "image": "![img](http://evil.example/p.png)",
    "mention": "@someone please look",
    "pipes": "a | b || c",
    "backticks": "``code`` and `x`",
    "entity": "&lt;b&gt; &amp; &#64;admin",
    "bidi": "abc\u202edcba\u2066x\u2069",
    "newlines": "line one\n\n# Heading\n- item\r\n> quote",
}


def hostile_record(*, model: str = "acme/clip-vit-b", revision: str = SHA_A) -> ScanRecord:
    """A backdoor record whose every owner-influenced string is an injection attempt."""
    base = make_record(Verdict.BACKDOOR, model=model, revision=revision)
    captions = [TargetCaption(text, 0.5) for text in HOSTILE_TEXT.values()]
    triggers = [
        TriggerCandidate(token=text, token_id=index, similarity=0.5, assimilation=0.5, target_agreement=0.5,
                         confirmed=index % 2 == 0)  # fmt: skip
        for index, text in enumerate(HOSTILE_TEXT.values())
    ]
    claim = HOSTILE_TEXT["js_link"]
    choice = replace(base.anchor_choice, card_claim=claim, runner_up=HOSTILE_TEXT["mention"],
                     finding=f"the card names {claim} as the base model, which is not a trusted base; "
                             f"{HOSTILE_TEXT['script']} {HOSTILE_TEXT['image']}")  # fmt: skip
    return replace(base, anchor="@owner/[anchor](http://x)", target_captions=captions, triggers=triggers[:10],
                   notes=list(HOSTILE_TEXT.values()), versions={"<b>lib</b>": "|1|"}, anchor_choice=choice)  # fmt: skip
