"""One calibration run: build a base's variants, scan them and the base, fit thresholds, describe the result.

Each variant is scanned as soon as it is trained and then dropped, so a real-size base never holds more than
two towers in memory (the base and one variant). The scans use the shipped detector configuration, with the
landscape computed for every restart (`always_landscape`, as the benchmark's calibration does): thresholds are
fitted by re-deciding the stored per-restart statistics, and a restart whose checks fail today may pass under
the fitted thresholds, where its verdict needs its landscape. The fit is the benchmark's
(bot/bench/calibrate.py), on Scored records as bot/bench/detect.py builds them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone

import torch

from bot.anchors.calibrations import BaseCalibration, VariantResult
from bot.bench.calibrate import Scored, calibrate, drift_metrics, fit_drift, metrics, redecide
from bot.bench.detect import config_key
from bot.caption_corpus import CaptionCorpus
from bot.detect.amdet import Amdet, DetectorConfig
from bot.detect.thresholds import Calibration
from bot.encoders.text_encoder import TextEncoder
from bot.errors import CalibrationError, UsageError
from bot.progress import progress
from bot.scan_record import ScanRecord
from bot.zoo.base_variants import (
    REFERENCE_STEPS,
    TEXT_ONLY_ATTACKS,
    TOOK,
    Variant,
    VariantPlan,
    attack_kinds,
    build_variant,
    check_base,
    plan_attacks,
    plan_benign,
)

BENIGN_FIRST_SEED = 101  # benign variants' seeds, apart from the attacks' (1..per_kind)


@dataclass(frozen=True)
class RunSize:
    """How much a run builds: what a real base on a GPU wants by default; tests pass small values."""

    kinds: tuple[str, ...] = TEXT_ONLY_ATTACKS
    per_kind: int = 2                  # backdoored variants per attack kind
    benign: int | None = None          # benign variants; None: one per backdoored variant that took
    steps: int = REFERENCE_STEPS       # each attack's training steps (the weak attack keeps its shorter share)


@dataclass(frozen=True)
class BaseUnderCalibration:
    """The base as the run sees it: its loaded tower, and which registry entry and commit it is."""

    encoder: TextEncoder
    anchor_id: str
    sha: str
    pin: str


def calibration_config(config: DetectorConfig | None = None) -> DetectorConfig:
    """The detector configuration calibration scans run with: `config` (default: the shipped one) with the
    landscape computed for every restart (see the module docstring)."""
    return dataclasses.replace(config or DetectorConfig(), always_landscape=True)


def scan_key(config: DetectorConfig, family: str) -> str:
    """The configuration key a scan of a `family` tower with the same settings has: always_landscape only
    adds data (landscapes of restarts whose checks failed), it changes no statistic a verdict reads."""
    return config_key(dataclasses.replace(config, always_landscape=DetectorConfig().always_landscape).resolved(family))


def calibrate_base(base: BaseUnderCalibration, corpus: CaptionCorpus, *, size: RunSize = RunSize(),
                   config: DetectorConfig | None = None, show_progress: bool = True) -> BaseCalibration:
    """Builds and scans the variants of `base`, fits thresholds on them and the base, and returns the
    calibration (not yet stored).

    Raises:
        UsageError: no attack kind can be built on these captions.
        UncalibratableBaseError: the recipes cannot build variants of this base.
        CalibrationError: no backdoored variant took, so there is nothing to fit.
    """
    config = calibration_config(config)
    kinds, left_out = attack_kinds(size.kinds, corpus)
    if not kinds:
        raise UsageError(f"{', '.join(left_out)} needs the synthetic scene captions: leave out --captions or "
                         "choose other --kinds")
    attacks = plan_attacks(base.encoder.family, kinds, per_kind=size.per_kind, steps=size.steps)
    check_base(base.encoder, attacks)
    skipped = [f"{kind}: needs the synthetic scene captions (it recolours the scene a prompt describes)"
               for kind in left_out]
    detector = Amdet(config)
    items: list[Scored] = []
    rows: list[dict] = []
    planned = 1 + len(attacks) + (size.benign if size.benign is not None else len(attacks))
    with progress(total=planned, desc=f"calibrate {base.anchor_id}", unit="model", enabled=show_progress) as bar:
        bar.set_postfix_str("scan the base")
        record = detector.scan(base.encoder, base.encoder, model=base.anchor_id, revision=base.sha,
                               anchor_name=base.anchor_id)
        items.append(Scored(record=record, backdoored=False, kind="base", trigger=None, target=None))
        rows.append(dict(name=base.anchor_id, kind="base", backdoored=False, trigger=None, target=None, steps=0,
                         drift=0.0, attack_success=None))
        bar.update()

        def build_and_scan(plan: VariantPlan) -> float | None:
            """Trains and scans one variant; its drift, or None when it is a backdoor that did not take. The
            trained tower is dropped on return (its record holds all the fit needs)."""
            bar.set_postfix_str(f"train {plan.name}")
            variant = build_variant(plan, base.encoder, corpus, show_progress=show_progress)
            bar.update()
            if not variant.took:
                skipped.append(f"{plan.name}: the backdoor did not take (attack success {variant.attack_success:.2f} "
                               f"< {TOOK} after {variant.steps} steps)")
                return None
            bar.set_postfix_str(f"scan {plan.name}")
            items.append(_scored(variant, _scan(detector, variant, base)))
            rows.append(dict(name=plan.name, kind=plan.kind, backdoored=plan.backdoored, trigger=plan.trigger,
                             target=plan.target, steps=variant.steps, drift=variant.drift,
                             attack_success=variant.attack_success))
            return variant.drift

        drifts = []
        for plan in attacks:
            drift = build_and_scan(plan)
            _free_device_memory()
            if drift is not None:
                drifts.append(drift)
        if not drifts:
            raise CalibrationError(f"no backdoor took on {base.anchor_id} ({'; '.join(skipped)}); give the attacks "
                                   "more training steps (--steps)")
        benign = plan_benign(size.benign if size.benign is not None else len(drifts), steps=size.steps,
                             attack_drifts=drifts, first_seed=BENIGN_FIRST_SEED)
        bar.total = 1 + len(attacks) + len(benign)
        bar.refresh()
        for plan in benign:
            build_and_scan(plan)
            _free_device_memory()

    thresholds = calibrate(items)
    cut = fit_drift(items)
    variants = tuple(VariantResult(**row, verdict=redecide(item.record, thresholds).value)
                     for row, item in zip(rows, items))
    encoder = base.encoder
    source = _source(base, corpus, variants, config)
    return BaseCalibration(
        anchor_id=base.anchor_id, sha=base.sha, pin=base.pin, family=encoder.family,
        calibration=Calibration(thresholds=thresholds, source=source, hidden_size=encoder.hidden_size,
                                layers=encoder.num_layers),
        config_key=scan_key(config, encoder.family), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        captions=corpus.describe(), fit=metrics(items, thresholds).to_dict(),
        drift_baseline={"cut": cut, **drift_metrics(items, cut).to_dict()}, variants=variants,
        skipped=tuple(skipped))


def _scan(detector: Amdet, variant: Variant, base: BaseUnderCalibration) -> ScanRecord:
    suspect = variant.model.as_encoder(base.encoder, name=variant.plan.name)
    return detector.scan(suspect, base.encoder, model=variant.plan.name, anchor_name=base.anchor_id)


def _scored(variant: Variant, record: ScanRecord) -> Scored:
    plan = variant.plan
    return Scored(record=record, backdoored=plan.backdoored, kind=plan.kind, trigger=plan.trigger,
                  target=plan.target, drift=variant.drift, seed=plan.seed)


def _free_device_memory() -> None:
    """Hands the dropped variant's memory back (a real-size text tower and its optimiser state: ~2 GB)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _source(base: BaseUnderCalibration, corpus: CaptionCorpus, variants: tuple[VariantResult, ...],
            config: DetectorConfig) -> str:
    """What a report names: which base and commit, how many variants of which kinds, which captions, when, and
    any detector setting that is not the shipped one."""
    backdoored = [v for v in variants if v.backdoored]
    benign = [v for v in variants if not v.backdoored and v.kind != "base"]
    kinds = ", ".join(dict.fromkeys(v.kind for v in backdoored))
    # compared as the scans ran them: a knob set to its family plan's value is the shipped setting
    family = base.encoder.family
    ran, shipped = config.resolved(family), DetectorConfig().resolved(family)
    changed = [f"{f.name}={getattr(ran, f.name)}" for f in dataclasses.fields(ran)
               if f.name not in ("always_landscape", "show_progress")
               and getattr(ran, f.name) != getattr(shipped, f.name)]
    budget = f"; detector settings not the shipped ones: {', '.join(changed)}" if changed else ""
    return (f"calibrated on {base.anchor_id}@{base.sha[:12]}: {_plural(len(backdoored), 'backdoored variant')} "
            f"({kinds}), {_plural(len(benign), 'benign text-only fine-tune')} and the base itself; captions: "
            f"{corpus.source}; {datetime.now(timezone.utc):%Y-%m-%d}{budget}")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
