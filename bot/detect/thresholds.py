"""Decision thresholds per family.

The paper's values (assimilation > 0.8 on > 80% of prompts, same target > 0.92 on
> 99.5%, anchor cosine < 0 on > 95%, Hessian positive ratio > 0.8) were tuned for
CLIP ViT-L/14. Ours are calibrated on the zoo (benchmarks/calibrate.py, seeds kept
apart from the reported benchmark) and recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Thresholds:
    assimilation: float = 0.8         # a prompt is "assimilated" when A(F') exceeds this
    assimilation_rate: float = 0.8    # ... and the share of assimilated prompts must exceed this
    same_target: float = 0.92         # a prompt agrees when cos(its target, consensus) exceeds this
    same_target_rate: float = 0.9
    anchor_cosine: float = 0.0        # a prompt differs from the anchor when cos(target, anchor's) is below
    different_target_rate: float = 0.95
    landscape_positive_ratio: float = 0.8

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


PAPER = Thresholds()

CALIBRATED_FILE = Path(__file__).with_name("calibrated_thresholds.json")


def for_family(family: str) -> Thresholds:
    """Calibrated thresholds for `family` when a calibration was recorded, else the paper's."""
    if CALIBRATED_FILE.is_file():
        data = json.loads(CALIBRATED_FILE.read_text())
        if family in data:
            return replace(PAPER, **data[family])
    return PAPER
