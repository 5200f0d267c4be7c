"""Calibrations of registered bases: thresholds fitted on one base's own variants (`clip-audit calibrate`),
stored with its registry entry and used by every scan that chooses that base, at that commit, as its anchor.

One JSON document per anchor id and commit, beside the state database:

    <calibrations_dir>/<owner>/<name>[/<subfolder>]/<sha>.json

It holds the thresholds and where they come from (a `Calibration`: source text, the tower size), the detector
configuration key the variants were scanned with, the date, the captions, the fitted metrics (and the
weight-drift baseline's on the same models), and a row per variant. A scan reads only the `Calibration`; the
rest is the evidence a person reviews before trusting it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bot.detect.thresholds import Calibration
from bot.errors import ConfigError
from bot.fileio import atomic_write_text
from bot.hub.ids import is_commit_sha

logger = logging.getLogger(__name__)

CALIBRATION_VERSION = 1


@dataclass(frozen=True)
class VariantResult:
    """One model the thresholds were fitted on."""

    name: str                        # "text-on-text-s1", "benign-text-s3", or the base's own id
    kind: str                        # "base", an attack kind, or "benign-text"
    backdoored: bool
    trigger: str | None
    target: str | None
    steps: int                       # training steps it took (0 for the base)
    drift: float                     # relative L2 of the text tower from the base
    attack_success: float | None     # backdoors: share of held-out triggered prompts that reach the target
    verdict: str                     # under the fitted thresholds


@dataclass(frozen=True)
class BaseCalibration:
    anchor_id: str
    sha: str                         # the base's commit the variants were trained from
    pin: str                         # how that commit was pinned: "registry" | "first use"
    family: str
    calibration: Calibration         # what a scan uses: thresholds, source, tower size
    config_key: str                  # bot.bench.detect.config_key of the detector configuration scanned with
    created: str                     # ISO 8601 date and time (UTC)
    captions: str                    # where the training captions came from
    fit: dict[str, Any]              # bot.bench.calibrate.Metrics.to_dict() under the fitted thresholds
    drift_baseline: dict[str, Any]   # the weight-drift threshold fitted on the same models: {"cut", **metrics}
    variants: tuple[VariantResult, ...]
    skipped: tuple[str, ...] = ()    # variants left out, and why (a backdoor that did not take)

    def to_json(self) -> str:
        data = asdict(self)
        data["calibration"] = self.calibration.to_dict()
        return json.dumps({"version": CALIBRATION_VERSION, **data}, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> BaseCalibration:
        """Raises ValueError (or KeyError, TypeError) when `data` is not a calibration document."""
        if not isinstance(data, dict) or data.get("version") != CALIBRATION_VERSION:
            raise ValueError(f"not a version-{CALIBRATION_VERSION} base calibration")
        fields = {k: v for k, v in data.items() if k != "version"}
        fields["calibration"] = Calibration.from_dict(fields["calibration"])
        fields["variants"] = tuple(VariantResult(**row) for row in fields["variants"])
        fields["skipped"] = tuple(fields.get("skipped", ()))
        calibration = cls(**fields)
        if not is_commit_sha(calibration.sha):
            raise ValueError(f"sha {calibration.sha!r} is not a commit sha")
        return calibration


def calibration_file(directory: Path, anchor_id: str, sha: str) -> Path:
    """Where the calibration of `anchor_id` (`owner/name` or `owner/name:subfolder`) at `sha` is stored."""
    if not is_commit_sha(sha):
        raise ValueError(f"{sha!r} is not a full commit sha")
    return Path(directory) / _folder(anchor_id) / f"{sha}.json"


def _folder(anchor_id: str) -> Path:
    # registry ids are checked (bot.anchors.registry): owner and name are plain Hub names, a subfolder one
    # plain folder name, so each entry has a folder of its own
    repo_id, _, subfolder = anchor_id.partition(":")
    folder = Path(*repo_id.split("/"))
    return folder / subfolder if subfolder else folder


def save_calibration(directory: Path, calibration: BaseCalibration) -> Path:
    """Writes (or replaces) the calibration of its anchor at its commit; returns the file."""
    path = calibration_file(directory, calibration.anchor_id, calibration.sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, calibration.to_json())
    return path


def read_calibration(path: Path) -> BaseCalibration:
    """Raises:
        ConfigError: unreadable, or not a calibration document."""
    try:
        return BaseCalibration.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a readable base calibration: {exc}") from None


def load_calibration(directory: Path, anchor_id: str, sha: str | None) -> BaseCalibration | None:
    """The stored calibration of `anchor_id` at `sha`, if there is one. A damaged file is logged and skipped:
    the scan then decides by the family's thresholds, and its report says so."""
    if sha is None or not is_commit_sha(sha):
        return None
    path = calibration_file(directory, anchor_id, sha)
    if not path.is_file():
        return None
    try:
        calibration = read_calibration(path)
    except ConfigError as error:
        logger.warning("ignoring a calibration: %s", error)
        return None
    if (calibration.anchor_id, calibration.sha) != (anchor_id, sha):
        logger.warning("ignoring %s: it is the calibration of %s@%s", path, calibration.anchor_id, calibration.sha)
        return None
    return calibration


def stored_calibrations(directory: Path, anchor_id: str) -> list[BaseCalibration]:
    """Every readable calibration of `anchor_id`, newest first."""
    folder = Path(directory) / _folder(anchor_id)
    found = [load_calibration(directory, anchor_id, path.stem) for path in sorted(folder.glob("*.json"))]
    return sorted((c for c in found if c is not None), key=lambda c: c.created, reverse=True)
