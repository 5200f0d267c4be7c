"""Choosing the anchor by the weights: the registered base nearest to the suspect, if any is near enough.

Runs where the weights are parsed (the token-free scanning child). Each candidate (a registered base with the
suspect's fingerprint, fetched pinned to its commit) is loaded in turn and its distance to the suspect taken
tensor by tensor; only the nearest stays loaded. The card's base_model claim decides nothing: it is compared
with the weights' choice afterwards, and a disagreement becomes a finding in the report.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from bot.anchors.fingerprint import Fingerprint, fingerprint_from_shapes
from bot.detect.thresholds import Calibration
from bot.encoders.text_encoder import TextEncoder
from bot.scan_record import AnchorChoice, AnchorDistance

# The farthest a fine-tune may sit from its base (median over tensors of |theta - theta_base| / |theta_base|).
# Calibrated on the zoo (docs/detector.md, "Trusted anchors"; `python benchmarks/anchor_distance.py`): the
# benign and backdoored CLIP fine-tunes sit 0.02-0.18 from their own base, a base pretrained from another
# seed 1.41 from it. The line is the geometric middle of that gap (0.5): 2.8x the farthest fine-tune, and a
# stranger is never an anchor.
MAX_FINE_TUNE_DISTANCE = 0.5


@dataclass(frozen=True)
class LocalBase:
    """A registered base held locally: where it is, which commit, and how that commit was pinned."""

    id: str
    path: Path
    subfolder: str | None = None
    sha: str | None = None
    pin: str | None = None        # "registry" | "first use" | None (a local zoo copy)
    moved_to: str | None = None   # the repo's head when it no longer matches the pin
    # thresholds fitted on this base's own variants at this commit (`clip-audit calibrate`), used when it is
    # chosen as the anchor; None: the family's calibration decides
    calibration: Calibration | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for the scanning child (which reads it back with from_dict)."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "path": str(self.path),
                "calibration": self.calibration.to_dict() if self.calibration is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalBase:
        calibration = data.get("calibration")
        return cls(**{**data, "path": Path(data["path"]),
                      "calibration": Calibration.from_dict(calibration) if calibration else None})


def tower_fingerprint(encoder: TextEncoder) -> Fingerprint | None:
    """A loaded tower's fingerprint, from its weights' shapes."""
    shapes = {name: tuple(tensor.shape) for name, tensor in encoder.tower.state_dict().items()}
    return fingerprint_from_shapes(encoder.family, shapes)


def weight_distance(suspect: TextEncoder, base: TextEncoder) -> float:
    """Median over the text tower's weight tensors of the relative L2 distance |s - b| / |b|."""
    ours = dict(suspect.tower.state_dict())
    theirs = dict(base.tower.state_dict())
    if suspect.projection is not None and base.projection is not None:
        ours.update({f"projection.{k}": v for k, v in suspect.projection.state_dict().items()})
        theirs.update({f"projection.{k}": v for k, v in base.projection.state_dict().items()})
    ratios = []
    for name, b in theirs.items():
        a = ours.get(name)
        if a is None or a.shape != b.shape or not torch.is_floating_point(b):
            continue
        norm = float(b.float().norm())
        if norm > 0:
            ratios.append(float((a.float() - b.float()).norm()) / norm)
    if not ratios:
        return float("inf")
    return statistics.median(ratios)


def choose_anchor(suspect: TextEncoder, candidates: Sequence[LocalBase], *,
                  load: Callable[[LocalBase], TextEncoder], card_claim: str | None, registered: Collection[str] = (),
                  max_distance: float = MAX_FINE_TUNE_DISTANCE) -> tuple[TextEncoder | None, AnchorChoice]:
    """The nearest candidate within `max_distance` (loaded), and the record of how it was chosen.

    `registered`: every registry id, of any shape, so that a card naming a trusted base of another
    architecture is told apart from one naming an untrusted repo."""
    measured: list[tuple[float, LocalBase]] = []
    nearest: tuple[float, LocalBase, TextEncoder] | None = None
    shape = tower_fingerprint(suspect)
    for candidate in candidates:
        encoder = load(candidate)
        if tower_fingerprint(encoder) != shape:
            continue  # this copy is not what the registry says: never compare across shapes
        distance = weight_distance(suspect, encoder)
        measured.append((distance, candidate))
        if nearest is None or distance < nearest[0]:
            nearest = (distance, candidate, encoder)
        else:
            del encoder  # only the nearest stays in memory
    measured.sort(key=lambda item: item[0])
    table = [AnchorDistance(candidate.id, round(distance, 5)) for distance, candidate in measured]
    runner_up = measured[1] if len(measured) > 1 else None
    common = dict(candidates=table, card_claim=card_claim,
                  runner_up=runner_up[1].id if runner_up else None,
                  runner_up_distance=round(runner_up[0], 5) if runner_up else None)  # fmt: skip
    if nearest is None:
        reason = ("no registered base has this text tower's architecture" if not candidates
                  else "no registered base of this architecture could be loaded")
        finding = _card_finding(card_claim, None, None, {}, registered)
        return None, AnchorChoice(how="none", reason=reason, finding=finding, **common)
    distance, candidate, encoder = nearest
    distances = {c.id: d for d, c in measured}
    if distance > max_distance:
        reason = (f"the weights are {distance:.2f} away from the nearest registered base ({candidate.id}), beyond "
                  f"the {max_distance:.2f} a fine-tune reaches: its base is not registered, and a comparison with "
                  "a stranger would mean nothing")
        finding = _card_finding(card_claim, None, None, distances, registered)
        return None, AnchorChoice(how="none", reason=reason, finding=finding, **common)
    choice = AnchorChoice(how="registry", anchor=candidate.id, sha=candidate.sha, pin=candidate.pin,
                          moved_to=candidate.moved_to, distance=round(distance, 5),
                          finding=_card_finding(card_claim, candidate.id, distance, distances, registered),
                          **common)  # fmt: skip
    return encoder, choice


def explicit_choice(name: str, *, card_claim: str | None) -> AnchorChoice:
    """The record of an anchor a person chose on the command line (`clip-audit scan --anchor`)."""
    return AnchorChoice(how="explicit", anchor=name, card_claim=card_claim,
                        reason="chosen with --anchor on the command line: a local choice, not checked against "
                               "the registry")  # fmt: skip


def _names(claim: str, anchor_id: str) -> bool:
    """Does the card's `claim` name this registry entry? Hub repo ids are case-insensitive; a diffusers entry
    ("repo:text_encoder") is named by its repo."""
    return claim.lower() in (anchor_id.lower(), anchor_id.split(":")[0].lower())


def _card_finding(claim: str | None, chosen: str | None, distance: float | None, distances: dict[str, float],
                  registered: Collection[str]) -> str | None:
    """What the card's base_model claim says against the weights; None when they agree or the card names none."""
    if not claim:
        return None
    if chosen is not None and _names(claim, chosen):
        return None
    claimed = next((d for name, d in distances.items() if _names(claim, name)), None)
    nearest = f"; the weights are nearest to {chosen} (distance {distance:.3f})" if chosen is not None else ""
    if claimed is not None:
        if chosen is None:
            return (f"the card names {claim} as the base model, but the weights are {claimed:.2f} away from it: "
                    "too far for a fine-tune of it")
        return f"the card names {claim} as the base model{nearest}, and {claimed:.3f} from {claim}"
    if any(_names(claim, name) for name in registered):
        return (f"the card names {claim} as the base model, a trusted base of another architecture: the weights "
                f"cannot be a fine-tune of it{nearest}")
    return f"the card names {claim} as the base model, which is not a trusted base{nearest}"
