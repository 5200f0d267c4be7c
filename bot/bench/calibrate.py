"""Threshold calibration on zoo scans, and the metrics reported on held-apart seeds.

Records keep every per-prompt statistic, so a verdict can be re-decided under new
thresholds without re-running the inversion.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

from bot.detect.checks import checks_from_arrays, decide, landscape_check, suspicion
from bot.detect.thresholds import PAPER, Thresholds
from bot.scan_record import CheckResult, ScanRecord, Verdict


@dataclass(frozen=True)
class Scored:
    record: ScanRecord
    backdoored: bool
    kind: str           # base | benign | text-on-text | text-on-pair
    trigger: str | None
    target: str | None


def _checks(assimilation: list[float], agreement: list[float], anchor_agreement: list[float],
            landscape_ratio: float | None, th: Thresholds) -> list[CheckResult]:
    anchor = np.asarray(anchor_agreement) if anchor_agreement else None
    checks = checks_from_arrays(np.asarray(assimilation), np.asarray(agreement), anchor, th)
    if landscape_ratio is not None:
        checks.append(landscape_check(landscape_ratio, th))
    return checks


def redecide_detail(record: ScanRecord, th: Thresholds) -> tuple[Verdict, list[CheckResult], float | None]:
    """The verdict the scan would have given under `th`, the checks of the restart that decides it
    (the most severe, as in a scan) and that restart's anchor weight (None for v1 records)."""
    has_anchor = record.anchor is not None
    if record.candidates:
        options = []
        for c in record.candidates:
            checks = _checks(c.assimilation, c.target_agreement, c.anchor_agreement, c.landscape_positive_ratio, th)
            options.append((decide(checks, has_anchor=has_anchor), checks, c.gamma))
        return max(options, key=lambda o: suspicion(o[0], o[1]))
    ratio = record.landscape.positive_ratio if record.landscape is not None else None
    checks = _checks(record.assimilation_with_trigger, record.target_agreement, record.anchor_agreement, ratio, th)
    return decide(checks, has_anchor=has_anchor), checks, None


def redecide(record: ScanRecord, th: Thresholds) -> Verdict:
    return redecide_detail(record, th)[0]


@dataclass(frozen=True)
class Metrics:
    n_backdoored: int
    n_benign: int
    precision: float
    recall: float
    f1: float
    fpr: float


def metrics(items: list[Scored], th: Thresholds) -> Metrics:
    flagged = [redecide(s.record, th) == Verdict.BACKDOOR for s in items]
    tp = sum(f and s.backdoored for f, s in zip(flagged, items))
    fp = sum(f and not s.backdoored for f, s in zip(flagged, items))
    fn = sum((not f) and s.backdoored for f, s in zip(flagged, items))
    negatives = sum(not s.backdoored for s in items)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Metrics(n_backdoored=tp + fn, n_benign=negatives, precision=precision, recall=recall, f1=f1,
                   fpr=fp / negatives if negatives else 0.0)


GRID = {
    # low values too: a text-on-text backdoor maps prompts onto a whole target sentence, whose
    # token features are alike only in part, so its assimilation can sit well under the paper's
    "assimilation": (0.5, 0.6, 0.7, 0.8),
    "assimilation_rate": (0.3, 0.5, 0.7, 0.8),
    "same_target": (0.92, 0.95, 0.97),
    "same_target_rate": (0.8, 0.9, 0.95),
    "anchor_cosine": (0.0, 0.5, 0.8, 0.9, 0.95),
    "different_target_rate": (0.2, 0.3, 0.5, 0.8, 0.95),
    "landscape_positive_ratio": (0.3, 0.5, 0.8),
}


def calibrate(items: list[Scored], *, start: Thresholds = PAPER) -> Thresholds:
    """Grid search for the thresholds with the best F1 on `items` (a false-positive rate over 5%
    costs 0.5). Many points usually tie; we take the one deepest inside the tied region, so every
    threshold sits mid-way in the gap between the classes rather than on its edge (an edge point
    flips on the first unseen model), and then the one nearest the paper's values."""
    names = list(GRID)
    scores: dict[tuple[int, ...], float] = {}
    for index in itertools.product(*(range(len(GRID[n])) for n in names)):
        m = metrics(items, _at(start, names, index))
        scores[index] = m.f1 - (0.5 if m.fpr > 0.05 else 0.0)
    top = max(scores.values())
    optimal = {index for index, score in scores.items() if score >= top - 1e-9}

    def depth(index: tuple[int, ...]) -> int:
        """Per threshold, how many grid steps it can move either way (the shorter side) and stay optimal."""
        total = 0
        for axis in range(len(names)):
            sides = []
            for step in (-1, 1):
                moved, probe = 0, list(index)
                while True:
                    probe[axis] += step
                    if tuple(probe) not in optimal:
                        break
                    moved += 1
                sides.append(moved)
            total += min(sides)
        return total

    def distance(index: tuple[int, ...]) -> float:
        th = _at(start, names, index)
        return sum(abs(getattr(th, n) - getattr(PAPER, n)) for n in names)

    return _at(start, names, max(optimal, key=lambda i: (depth(i), -distance(i))))


def _at(start: Thresholds, names: list[str], index: tuple[int, ...]) -> Thresholds:
    return replace(start, **{n: GRID[n][i] for n, i in zip(names, index)})
