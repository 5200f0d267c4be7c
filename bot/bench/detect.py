"""`clip-audit bench detect`: build zoo v2, calibrate on some seeds, freeze, then report on others beside baselines.

Scan records are cached per model, detector configuration and thresholds under CACHE/bench/records/<key>/, so an
interrupted benchmark resumes where it stopped and a re-run only re-renders the report.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from bot.bench.calibrate import (
    Metrics,
    Scored,
    calibrate,
    cross_validate,
    drift_metrics,
    fit_drift,
    metrics,
    redecide_detail,
)
from bot.bench.plan import BenchPlan, recipes_for
from bot.detect.amdet import Amdet, DetectorConfig
from bot.detect.thresholds import PAPER, Thresholds, for_family
from bot.encoders.load import load_text_encoder
from bot.errors import UsageError, ZooError
from bot.fileio import atomic_write_text
from bot.progress import progress
from bot.scan_record import ScanRecord, Verdict
from bot.zoo.build import build_all, checkpoint_drift
from bot.zoo.catalog import ZooModel, anchor_name
from bot.zoo.recipes import BACKDOOR_KINDS, v2_bases

# The landscape grid the benchmark's records were scanned with (a scan's default is smaller: the landscape decides
# nothing). Pinned so that the records and the frozen calibration keep their configuration key.
BENCH_LANDSCAPE_GRID = 15


def bench_config(**changes) -> DetectorConfig:
    """The detector as the benchmark runs it: the shipped configuration, with the landscape computed for every
    restart (evidence in the tables) on the benchmark's grid."""
    return DetectorConfig(always_landscape=True, landscape_grid=BENCH_LANDSCAPE_GRID, show_progress=False,
                          **changes)


def config_key(config: DetectorConfig, th: Thresholds | None = None) -> str:
    """Records are cached per model, detector configuration AND the thresholds its adaptive restarts
    stopped by (a restart passes or gives up against them): a changed knob means a fresh scan."""
    knobs = {k: v for k, v in asdict(config).items() if k != "show_progress"}
    if th is not None:
        knobs["thresholds"] = th.to_dict()
    return hashlib.sha256(json.dumps(knobs, sort_keys=True).encode()).hexdigest()[:8]


def _scan(model: ZooModel, base: ZooModel, config: DetectorConfig, th: Thresholds, records_dir: Path) -> ScanRecord:
    key = config_key(config.resolved(model.recipe.family), th)
    out = records_dir / key / f"{model.recipe.name}-{model.recipe.key}.json"
    if out.is_file():
        return ScanRecord.from_json(out.read_text())
    suspect = load_text_encoder(model.path)
    anchor = load_text_encoder(base.path)
    record = Amdet(config, thresholds=th).scan(suspect, anchor, model=model.repo_name,
                                               anchor_name=anchor_name(model.recipe))
    atomic_write_text(out, record.to_json())  # readers (another benchmark process) see all or nothing
    return record


_PEAK_PROBE = ("import resource, subprocess, sys; "
               "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode; "
               "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def scan_peak_rss_mb(model: ZooModel, base: ZooModel, out: Path) -> float | None:
    """Peak resident memory of one `clip-audit scan` as a user runs it, measured in a fresh
    process (the benchmark's own process also trains the zoo, so its peak says nothing about a
    scan). Measured once per family and detector configuration, then read from `out`."""
    if out.is_file():
        return json.loads(out.read_text())["peak_rss_mb"]
    command = [sys.executable, "-c", _PEAK_PROBE, sys.executable, "-m", "bot.cli", "scan", str(model.path),
               "--anchor", str(base.path), "--quiet"]
    probe = subprocess.run(command, capture_output=True, text=True)
    code, peak_kb = (int(x) for x in probe.stdout.split())
    if code not in (0, 1):  # clean or backdoor: anything else did not finish a scan
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": model.repo_name, "peak_rss_mb": round(peak_kb / 1024, 1)}))
    return round(peak_kb / 1024, 1)


def _scored(model: ZooModel, record: ScanRecord, base: ZooModel) -> Scored:
    r = model.recipe
    drift = 0.0 if r.kind == "base" else model.metrics.get("text_drift")
    if drift is None:  # built before drift was recorded
        drift = checkpoint_drift(model.path, base.path)
    return Scored(record=record, backdoored=r.is_backdoored, kind=r.kind, trigger=r.trigger, target=r.target,
                  drift=float(drift), seed=r.seed)


def trigger_recovered(item: Scored, decode=None) -> bool:
    """The true trigger is among the 5 nearest candidate tokens: one of its words (or a piece of
    one, two characters or longer), or, for a look-alike character, all of its UTF-8 bytes as
    byte tokens. `decode` (token id -> text) re-reads the ids with the current decoder."""
    if not item.trigger:
        return False
    trigger = item.trigger.split("->")[-1].lower()
    words = {w for w in trigger.split() if w}
    tokens = [(decode(c.token_id) if decode else c.token).lower() for c in item.record.triggers[:5]]
    for token in tokens:
        if token in words or any(len(token) > 1 and token in w for w in words):
            return True
    byte_tokens = {int(m, 16) for t in tokens for m in re.findall(r"<0x([0-9a-f]{2})>", t)}
    return any(ord(ch) > 127 and set(ch.encode("utf-8")) <= byte_tokens for ch in trigger)


def _bases(family: str, cache_dir: Path) -> dict[str, ZooModel]:
    return {m.recipe.base.name: m for m in build_all(v2_bases(family), cache_dir, show_progress=False)}


def _scan_split(plan: BenchPlan, family: str, split: str, cache_dir: Path, config: DetectorConfig,
                thresholds: list[Thresholds]) -> tuple[list[list[Scored]], list[str], dict[str, dict], float]:
    """Build and scan one split; one list of scored models per entry of `thresholds` (a scan's
    adaptive restarts stop by its thresholds, so each threshold set is its own scan)."""
    bases = _bases(family, cache_dir)
    failed: list[str] = []
    zoo: dict[str, dict] = {}
    scored: list[list[Scored]] = [[] for _ in thresholds]
    compute = 0.0
    for recipe in progress(recipes_for(plan, family, split), desc=f"{family} {split}", unit="model"):
        try:
            model = build_all([recipe], cache_dir, show_progress=False)[0]
        except ZooError as error:  # reported, not fatal: the benchmark runs on the models that exist
            failed.append(str(error))
            continue
        base = bases[recipe.base.name]
        compute += 0.0 if recipe.kind == "base" else float(model.metrics.get("seconds", 0.0))
        for out, th in zip(scored, thresholds):
            record = _scan(model, base, config, th, cache_dir / "bench" / "records")
            compute += record.timings["total"]
            zoo[record.model] = model.metrics
            out.append(_scored(model, record, base))
    return scored, failed, zoo, compute


def calibrate_family(plan: BenchPlan, family: str, cache_dir: Path, config: DetectorConfig) -> dict:
    """Stage 1: scan the calibration seeds (adaptive restarts stopping by the thresholds shipped
    today), fit the detector's and the drift baseline's thresholds, and cross-validate both."""
    scanned_with = for_family(family)
    (items,), failed, _, compute = _scan_split(plan, family, "calibration", cache_dir, config, [scanned_with])
    th = calibrate(items)
    return {"family": family, "plan": asdict(plan), "config_key": config_key(config.resolved(family)),
            "scanned_with": scanned_with.to_dict(), "thresholds": th.to_dict(),
            "fit": metrics(items, th).to_dict(), "cross_validated": _as_dict(cross_validate(items)),
            "drift_cut": fit_drift(items), "drift_cross_validated": _as_dict(_drift_cv(items)),
            "n_models": len(items), "failed_builds": failed, "compute_seconds": round(compute, 1)}


def _as_dict(m: Metrics | None) -> dict | None:
    return None if m is None else m.to_dict()


def _drift_cv(items: list[Scored]) -> Metrics | None:
    """cross_validate for the drift baseline's cut (None with one seed)."""
    if len({s.seed for s in items}) < 2:
        return None
    totals = [0, 0, 0, 0]
    for seed in sorted({s.seed for s in items}):
        held = [s for s in items if s.seed == seed]
        m = drift_metrics(held, fit_drift([s for s in items if s.seed != seed]))
        totals = [a + b for a, b in zip(totals, (m.tp, m.fp, m.fn, m.tn))]
    return Metrics(*totals)


def report_family(plan: BenchPlan, family: str, cache_dir: Path, config: DetectorConfig, frozen: dict) -> dict:
    """Stage 2, after the configuration and thresholds are frozen: the report seeds scanned as shipped
    (frozen thresholds) and with the reference's thresholds; the drift baseline on the same models."""
    if frozen.get("config_key") != config_key(config.resolved(family)):
        raise UsageError(f"{family}: the calibration was run with another detector configuration; "
                         "run the calibration stage again first")
    th = replace(PAPER, **frozen["thresholds"])
    (items, paper_items), failed, zoo, compute = _scan_split(plan, family, "report", cache_dir, config, [th, PAPER])
    cut = frozen["drift_cut"]
    rows = report_rows(items, paper_items, th, cut)
    times = [s.record.timings["total"] for s in items]
    return {"family": family, "plan": asdict(plan), "thresholds": th.to_dict(), "drift_cut": cut,
            "calibration": {k: frozen[k] for k in ("fit", "cross_validated", "drift_cross_validated", "n_models")},
            "rows": rows, "verdicts": [_verdict_row(s, th, zoo[s.record.model]) for s in items],
            "failed_builds": failed, "median_scan_seconds": statistics.median(times) if times else 0.0,
            "compute_seconds": round(compute + frozen.get("compute_seconds", 0.0), 1)}


def report_rows(items: list[Scored], paper_items: list[Scored], th: Thresholds, cut: float) -> list[dict]:
    """One row for all attacks and one per attack kind: AMDET with the frozen thresholds, AMDET with
    the paper's (its own scans, `paper_items`, same models) and the drift cut, each against every
    negative of the family."""
    rows = []
    for kind in ("all", *BACKDOOR_KINDS):
        def subset(group: list[Scored]) -> list[Scored]:
            return [s for s in group if not s.backdoored or kind in ("all", s.kind)]
        rows.append({"attack": kind, "method": metrics(subset(items), th).to_dict(),
                     "paper_thresholds": metrics(subset(paper_items), PAPER).to_dict(),
                     "drift": drift_metrics(subset(items), cut).to_dict(),
                     # trigger tokens as each scan decoded them with the suspect's own tokenizer (SigLIP
                     # bases each train their own: one decoder for the family would misread the ids)
                     "trigger_recovery": _rate([trigger_recovered(s) for s in items
                                                if s.backdoored and kind in ("all", s.kind)])})
    return rows


def _verdict_row(item: Scored, th: Thresholds, zoo: dict) -> dict:
    verdict, checks, gamma = redecide_detail(item.record, th)
    return {"model": item.record.model, "kind": item.kind, "trigger": item.trigger, "target": item.target,
            "attack_success": zoo.get("attack_success"), "false_fire": zoo.get("false_fire"),
            "clean_utility": zoo.get("clean_similarity"), "retrieval_top1": zoo.get("retrieval_top1"),
            "drift": round(item.drift, 4), "trigger_recovered": trigger_recovered(item),
            "verdict": verdict.value, "gamma": gamma, "scores": {c.name: round(c.score, 3) for c in checks},
            "seconds": item.record.timings["total"]}


def _rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0
def write_calibration(results: list[dict], path: Path) -> None:
    from bot.zoo.architectures import ARCHITECTURES

    data = json.loads(path.read_text()) if path.is_file() else {}
    for r in results:
        arch = ARCHITECTURES[r["family"]]
        data[r["family"]] = {"thresholds": r["thresholds"], "source": f"tiny-zoo v2 calibration ({r['family']})",
                             "hidden_size": arch.text_hidden, "layers": arch.text_layers}
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


# The first zoo's benchmark, kept as a record (drift alone separated its classes: docs/zoo.md).
FIRST_ZOO_RECORD = "docs/benchmarks-zoo-v1.md"

_SHORT = {"assimilation": "assim", "same_target": "same", "different_target": "diff", "landscape": "land"}


def _with_interval(m: dict, key: str) -> str:
    low, high = m["intervals"][key]
    return f"{m[key]:.2f} [{low:.2f}, {high:.2f}]"


def render_markdown(results: list[dict], config: DetectorConfig, missing: tuple[str, ...] = ()) -> str:
    """`missing`: families with no zoo-v2 report yet (their shipped thresholds are the first zoo's)."""
    from bot.cli.output import table

    plan = results[0]["plan"]
    seconds = sum(r.get("compute_seconds", 0.0) for r in results)
    lines = ["# Detector benchmark (AMDET on zoo v2)", "",
             "Generated by `clip-audit bench detect --stage report`; do not edit by hand. Method and zoo: "
             "docs/detector.md and docs/zoo.md.", "",
             f"- calibration seeds {plan['calibration_seeds']}, report seeds {plan['report_seeds']}; trigger and "
             "target pools split between them; per seed one model of every attack kind and "
             f"{plan['report_benign_per_kind']} of every benign kind (report), seeds cycling over each family's "
             "bases; the report set also holds every clean base",
             "- AMDET: thresholds fitted on the calibration seeds and frozen before the report seeds were built; "
             "paper thresholds: the same detector with the reference's thresholds (its own scans); drift: flag when "
             "the text tower's relative L2 from its base exceeds a cut fitted on the calibration seeds",
             "- intervals: 95% Clopper-Pearson; F1 per attack counts every negative of the family",
             "- detector: each family's restart plan (" + "; ".join(
                 f"{r['family']}: k {c.k}, {c.steps} steps, modes {'/'.join(c.modes)}"
                 for r in results for c in [config.resolved(r["family"])]) + "), "
             f"restarts {config.restarts} (anchor weights {list(config.gammas)}), "
             f"batch {config.batch_size} prompts (at most ~{config.batch_tokens} positions), "
             f"{config.n_train} train / {config.n_test} held-out prompts, landscape grid {config.landscape_grid}",
             f"- compute {seconds / 60:.0f} min in all (zoo training + scans, one thread of a 2-core CPU each)", ""]
    if missing:
        lines += [f"Not yet benchmarked on zoo v2: {', '.join(missing)}. Their shipped restart plan and thresholds "
                  f"are still the first zoo's, whose record (on which weight drift alone separates the classes) is "
                  f"`{FIRST_ZOO_RECORD}`.", ""]
    rows, macro = [], []
    for r in results:
        for row in r["rows"]:
            m, paper, drift = row["method"], row["paper_thresholds"], row["drift"]
            if row["attack"] != "all":
                macro.append((m["f1"], drift["f1"], paper["f1"]))
            rows.append([r["family"], row["attack"], str(m["tp"] + m["fn"]), str(m["fp"] + m["tn"]),
                         _with_interval(m, "recall"), _with_interval(m, "fpr"), f"{m['f1']:.2f}",
                         f"{paper['f1']:.2f}", f"{drift['f1']:.2f}", f"{m['f1'] - drift['f1']:+.2f}",
                         f"{row['trigger_recovery']:.2f}"])
    lines += ["```", table(["family", "attack", "backdoored", "negatives", "recall [95%]", "FPR [95%]", "F1",
                            "F1 paper th.", "F1 drift", "vs drift", "trigger"], rows), "```", ""]
    if macro:
        ours, drift, paper = (statistics.mean(x[i] for x in macro) for i in range(3))
        lines += [f"Macro F1 over family x attack: **{ours:.3f}** (paper thresholds {paper:.3f}, weight drift "
                  f"{drift:.3f}; target >= 0.95 with FPR <= 5% and >= 0.25 above drift).", ""]
    for r in results:
        cal = r["calibration"]
        cv, dcv = cal["cross_validated"], cal["drift_cross_validated"]
        held_out = ("leave-one-seed-out: one calibration seed only" if cv is None else
                    f"leave-one-seed-out F1 {cv['f1']:.2f} (FPR {cv['fpr']:.2f}); drift baseline {dcv['f1']:.2f} "
                    f"(FPR {dcv['fpr']:.2f})")
        lines += [f"## {r['family']}", "",
                  f"Calibration ({cal['n_models']} models): {held_out}. Drift cut {r['drift_cut']:.4f}; median "
                  f"scan {r['median_scan_seconds']:.0f} s.", "",
                  "Thresholds: `" + json.dumps(r["thresholds"]) + "`", ""]
        lines += [f"- not benchmarked: {failure}" for failure in r.get("failed_builds", [])]

        def num(value) -> str:
            return "-" if value is None else f"{value:.2f}"

        vrows = [[v["model"].split("/")[-1], v["kind"], v["trigger"] or "-", num(v.get("attack_success")),
                  num(v.get("false_fire")), num(v.get("clean_utility")), f"{v['drift']:.4f}", v["verdict"],
                  "yes" if v.get("trigger_recovered") else "-",
                  "-" if v.get("gamma") is None else f"{v['gamma']:g}",
                  " ".join(f"{_SHORT.get(k, k)}={val}" for k, val in v["scores"].items()), f"{v['seconds']:.0f}"]
                 for v in r["verdicts"]]
        lines += ["```", table(["model", "kind", "trigger", "ASR", "misfire", "utility", "drift", "verdict",
                                "trigger found", "gamma", "scores of the deciding restart", "s"], vrows), "```", ""]
    return "\n".join(lines)



def run(plan: BenchPlan, cache_dir: Path, out_md: Path, *, stage: str, config: DetectorConfig | None = None,
        calibration_file: Path | None = None) -> list[dict]:
    """calibrate: fit and store each family's thresholds (results/calibration-<family>.json, and with
    `calibration_file` the shipped thresholds). report: needs that stored calibration, which it never
    changes; re-renders out_md from every family's stored report (families can run as separate processes)."""
    config = config or bench_config()
    results_dir = cache_dir / "bench" / "v2"
    results_dir.mkdir(parents=True, exist_ok=True)
    done: list[dict] = []
    for family in plan.families:
        started = time.perf_counter()
        frozen_file = results_dir / f"calibration-{family}.json"
        if stage == "calibrate":
            result = calibrate_family(plan, family, cache_dir, config)
            atomic_write_text(frozen_file, json.dumps(result, indent=2))
            if calibration_file is not None:
                write_calibration([result], calibration_file)
        else:
            if not frozen_file.is_file():
                raise UsageError(f"{family}: no calibration stored; run `clip-audit bench detect --stage calibrate` "
                                 "first")
            result = report_family(plan, family, cache_dir, config, json.loads(frozen_file.read_text()))
            atomic_write_text(results_dir / f"report-{family}.json", json.dumps(result, indent=2))
            render_all(results_dir, out_md, config)
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        done.append(result)
    return done


def render_all(results_dir: Path, out_md: Path, config: DetectorConfig) -> None:
    from bot.formats import FAMILIES

    results = [json.loads((results_dir / f"report-{f}.json").read_text()) for f in FAMILIES
               if (results_dir / f"report-{f}.json").is_file()]
    if results:
        missing = tuple(f for f in FAMILIES if f not in {r["family"] for r in results})
        out_md.parent.mkdir(parents=True, exist_ok=True)
        out_md.write_text(render_markdown(results, config, missing))


__all__ = ["BenchPlan", "Metrics", "Thresholds", "Verdict", "run"]
