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

# Per family: the thresholds, where they come from and the size of the towers they were fitted on
# (written by `clip-audit bench detect --stage calibrate --write-thresholds`).
CALIBRATED_FILE = Path(__file__).with_name("calibrated_thresholds.json")


@dataclass(frozen=True)
class Calibration:
    """Thresholds and where they come from: a verdict is only as good as the models its thresholds
    were fitted on, so every report names them."""

    thresholds: Thresholds
    source: str                     # e.g. "tiny-zoo calibration (clip)", "the paper's thresholds"
    hidden_size: int | None = None  # the towers it was fitted on; None: unknown (the paper's)
    layers: int | None = None

    def describe(self) -> str:
        if self.hidden_size is None:
            return self.source
        return f"{self.source}, fitted on text towers of width {self.hidden_size} with {self.layers} layers"

    def to_dict(self) -> dict:
        return {"thresholds": self.thresholds.to_dict(), "source": self.source, "hidden_size": self.hidden_size,
                "layers": self.layers}

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        """The inverse of to_dict; thresholds it does not name keep the paper's values.

        Raises:
            ValueError: not a calibration (a missing source, an unknown threshold, a value that is not a number).
        """
        thresholds = data.get("thresholds")
        source = data.get("source")
        if not isinstance(thresholds, dict) or not isinstance(source, str) or not source:
            raise ValueError("a calibration needs a thresholds object and a source")
        unknown = set(thresholds) - set(PAPER.to_dict())
        if unknown or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in thresholds.values()):
            raise ValueError(f"not thresholds: {sorted(unknown) or thresholds}")
        size = {k: data.get(k) for k in ("hidden_size", "layers")}
        if not all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0) for v in size.values()):
            raise ValueError(f"hidden_size and layers must be positive integers, got {size}")
        return cls(thresholds=replace(PAPER, **{k: float(v) for k, v in thresholds.items()}), source=source, **size)

    def mismatch(self, hidden_size: int, layers: int) -> str | None:
        """A note when the scanned tower is not the size this calibration was fitted on."""
        if self.hidden_size is None or (hidden_size, layers) == (self.hidden_size, self.layers):
            return None
        return (f"this text tower (width {hidden_size}, {layers} layers) was judged with thresholds fitted on "
                f"towers of width {self.hidden_size} with {self.layers} layers ({self.source}); a calibration on "
                "this model's own base would be more reliable")


def calibration_for(family: str) -> Calibration:
    """The shipped calibration for `family` when one was recorded, else the paper's thresholds."""
    if CALIBRATED_FILE.is_file():
        entry = json.loads(CALIBRATED_FILE.read_text()).get(family)
        if entry is not None:
            return Calibration(thresholds=replace(PAPER, **entry["thresholds"]),
                               source=entry.get("source", f"tiny-zoo calibration ({family})"),
                               hidden_size=entry.get("hidden_size"), layers=entry.get("layers"))
    return Calibration(thresholds=PAPER, source="the paper's thresholds (no calibration recorded)")


def for_family(family: str) -> Thresholds:
    """Calibrated thresholds for `family` when a calibration was recorded, else the paper's."""
    return calibration_for(family).thresholds
