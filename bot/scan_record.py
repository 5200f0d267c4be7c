"""The versioned JSON record of one scan: what the detector found and why.

A record is the single source of truth for everything rendered later (Hub
posts, report pages): persist first, render second.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.errors import EXIT_BACKDOOR, EXIT_CLEAN, EXIT_ERROR

RECORD_VERSION = 3
# v1 records (before side-by-side restarts) have no candidates; v2 records no anchor_choice
READABLE_VERSIONS = (1, 2, 3)


class Verdict(str, enum.Enum):
    BACKDOOR = "backdoor"          # injected backdoor: all checks and the landscape filter hold
    NATURAL_ONLY = "natural-only"  # earlier versions: the landscape said "natural" (it no longer decides)
    CLEAN = "clean"                # no inverted direction passes the checks
    INCONCLUSIVE = "inconclusive"  # the detector could not decide (e.g. no anchor model)

    @property
    def exit_code(self) -> int:
        """What `clip-audit scan` (and the scanning child) exits with for this verdict."""
        if self is Verdict.BACKDOOR:
            return EXIT_BACKDOOR
        if self is Verdict.INCONCLUSIVE:
            return EXIT_ERROR
        return EXIT_CLEAN  # natural-only: the base's own quirk, nothing injected


@dataclass(frozen=True)
class CheckResult:
    name: str            # "assimilation" | "same_target" | "different_target" | "landscape"
    score: float
    threshold: float
    passed: bool
    description: str


@dataclass(frozen=True)
class TriggerCandidate:
    token: str                 # decoded vocabulary token
    token_id: int
    similarity: float          # cosine to the inverted embedding
    assimilation: float        # mean assimilation when the real token is inserted in held-out prompts
    target_agreement: float    # mean cosine of those features to the inverted target feature
    confirmed: bool


@dataclass(frozen=True)
class TargetCaption:
    caption: str
    similarity: float


@dataclass(frozen=True)
class Landscape:
    alphas: list[float]            # grid axis along -grad direction
    betas: list[float]             # grid axis along a random orthogonal direction
    loss: list[list[float]]        # loss[i][j] at (alphas[i], betas[j])
    hessian_eigenvalues: list[float]
    positive_ratio: float


@dataclass(frozen=True)
class Candidate:
    """One inversion restart: enough per-prompt statistics to re-decide it under other thresholds."""

    gamma: float                   # anchor weight of this restart's objective
    steps: int
    verdict: Verdict
    checks: list[CheckResult]
    assimilation: list[float]      # per held-out prompt, with the inverted pseudo-token
    target_agreement: list[float]
    anchor_agreement: list[float]
    landscape_positive_ratio: float | None
    stop: str = ""                 # why the restart ended (detect.inversion.Stop); "" in older records
    position: str = "start"        # where its pseudo-token was inserted (detect.features.POSITIONS)
    mode: str = "tokens"           # what it optimised and was judged on (detect.inversion.MODES)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Candidate":
        return cls(gamma=data["gamma"], steps=data["steps"], verdict=Verdict(data["verdict"]),
                   checks=[CheckResult(**c) for c in data["checks"]], assimilation=list(data["assimilation"]),
                   target_agreement=list(data["target_agreement"]), anchor_agreement=list(data["anchor_agreement"]),
                   landscape_positive_ratio=data.get("landscape_positive_ratio"), stop=data.get("stop", ""),
                   position=data.get("position", "start"), mode=data.get("mode", "tokens"))


@dataclass(frozen=True)
class AnchorDistance:
    anchor: str                    # a registry entry id
    distance: float                # median relative L2 of the weights to it


@dataclass(frozen=True)
class AnchorChoice:
    """How the anchor was chosen: by the weights among trusted bases, by a person (--anchor), or not at all."""

    how: str                       # "registry" | "explicit" | "none"
    anchor: str | None = None      # the registry entry id (registry) or the path given (explicit)
    sha: str | None = None         # the anchor's commit
    pin: str | None = None         # "registry" (reviewed sha) | "first use" (pinned when first fetched)
    moved_to: str | None = None    # the repo's head when it moved away from the pin (the pin was kept)
    distance: float | None = None
    runner_up: str | None = None
    runner_up_distance: float | None = None
    candidates: list[AnchorDistance] = field(default_factory=list)
    card_claim: str | None = None  # the card's base_model: uploader-written, never used to choose
    finding: str | None = None     # when the card and the weights disagree
    reason: str | None = None      # why there is no anchor, or why a person chose it

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AnchorChoice":
        fields = {k: v for k, v in data.items() if k != "candidates"}
        return cls(**fields, candidates=[AnchorDistance(**c) for c in data.get("candidates", [])])


@dataclass(frozen=True)
class ScanRecord:
    record_version: int
    model: str                     # path or repo id
    revision: str | None           # commit sha when scanned from the Hub
    family: str                    # clip | longclip | siglip
    format: str                    # transformers-clip | open_clip | diffusers | ...
    anchor: str | None
    verdict: Verdict
    checks: list[CheckResult]
    target_captions: list[TargetCaption]
    triggers: list[TriggerCandidate]
    landscape: Landscape | None
    # per-prompt assimilation on held-out prompts, with and without the inverted trigger
    assimilation_with_trigger: list[float]
    assimilation_without_trigger: list[float]
    # share of attention the inserted token receives, per layer (mean over heads/queries)
    attention_share_per_layer: list[float]
    restarts: int
    steps: int
    seed: int
    timings: dict[str, float]      # seconds per phase, plus "total"
    device: str
    versions: dict[str, str]
    notes: list[str] = field(default_factory=list)
    # per held-out prompt: cosine of its target to the consensus target, and to the anchor's target
    target_agreement: list[float] = field(default_factory=list)
    anchor_agreement: list[float] = field(default_factory=list)
    # every restart; the top-level fields describe the most suspicious one
    candidates: list[Candidate] = field(default_factory=list)
    anchor_choice: AnchorChoice | None = None
    calibration: str | None = None  # which thresholds decided the verdict (detect.thresholds.Calibration)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict.value
        data["candidates"] = [c.to_dict() for c in self.candidates]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScanRecord":
        if data.get("record_version") not in READABLE_VERSIONS:
            raise ValueError(f"unsupported record_version {data.get('record_version')!r}")
        landscape = data.get("landscape")
        return cls(
            record_version=data["record_version"],
            model=data["model"],
            revision=data.get("revision"),
            family=data["family"],
            format=data["format"],
            anchor=data.get("anchor"),
            verdict=Verdict(data["verdict"]),
            checks=[CheckResult(**c) for c in data["checks"]],
            target_captions=[TargetCaption(**t) for t in data["target_captions"]],
            triggers=[TriggerCandidate(**t) for t in data["triggers"]],
            landscape=Landscape(**landscape) if landscape else None,
            assimilation_with_trigger=list(data["assimilation_with_trigger"]),
            assimilation_without_trigger=list(data["assimilation_without_trigger"]),
            attention_share_per_layer=list(data["attention_share_per_layer"]),
            restarts=data["restarts"],
            steps=data["steps"],
            seed=data["seed"],
            timings=dict(data["timings"]),
            device=data["device"],
            versions=dict(data["versions"]),
            notes=list(data.get("notes", [])),
            target_agreement=list(data.get("target_agreement", [])),
            anchor_agreement=list(data.get("anchor_agreement", [])),
            candidates=[Candidate.from_dict(c) for c in data.get("candidates", [])],
            anchor_choice=AnchorChoice.from_dict(data["anchor_choice"]) if data.get("anchor_choice") else None,
            calibration=data.get("calibration"),
        )

    @classmethod
    def from_json(cls, text: str) -> "ScanRecord":
        return cls.from_dict(json.loads(text))
