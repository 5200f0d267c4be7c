"""Threshold calibration on zoo scans, and the metrics reported on held-apart seeds.

Records keep every per-prompt statistic, so a verdict can be re-decided under new
thresholds without re-running the inversion.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

from bot.detect.checks import checks_from_arrays, decide, landscape_check
from bot.detect.record import ScanRecord, Verdict
from bot.detect.thresholds import PAPER, Thresholds


@dataclass(frozen=True)
class Scored:
    record: ScanRecord
    backdoored: bool
    kind: str           # base | benign | text-on-text | text-on-pair
    trigger: str | None
    target: str | None


def redecide(record: ScanRecord, th: Thresholds) -> Verdict:
    anchor = np.asarray(record.anchor_agreement) if record.anchor_agreement else None
    checks = checks_from_arrays(np.asarray(record.assimilation_with_trigger), np.asarray(record.target_agreement),
                                anchor, th)
    if record.landscape is not None:
        checks.append(landscape_check(record.landscape.positive_ratio, th))
    return decide(checks, has_anchor=record.anchor is not None)


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


def calibrate(items: list[Scored], *, start: Thresholds = PAPER) -> Thresholds:
    """Grid search for the thresholds with the best F1 on `items`, ties broken towards the
    paper's values (the smallest move from a published operating point)."""
    grid = {
        "assimilation": (0.6, 0.7, 0.8),
        "assimilation_rate": (0.5, 0.7, 0.8),
        "same_target": (0.92, 0.95, 0.97),
        "same_target_rate": (0.8, 0.9, 0.95),
        "anchor_cosine": (0.0, 0.5, 0.8, 0.9, 0.95),
        "different_target_rate": (0.3, 0.5, 0.8, 0.95),
        "landscape_positive_ratio": (0.3, 0.5, 0.8),
    }
    best: tuple[float, float, Thresholds] | None = None
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        th = replace(start, **dict(zip(names, values)))
        m = metrics(items, th)
        score = m.f1 - (0.5 if m.fpr > 0.05 else 0.0)
        distance = sum(abs(getattr(th, n) - getattr(PAPER, n)) for n in names)
        key = (score, -distance)
        if best is None or key > best[:2]:
            best = (score, -distance, th)
    assert best is not None
    return best[2]
