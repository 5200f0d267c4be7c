"""`clip-audit bench detect`: build a zoo, scan every model, calibrate on some seeds, report on others.

Scan records are cached per model and detector configuration under CACHE/bench/records/<config>/, so an interrupted
benchmark resumes where it stopped and a re-run only re-renders the report.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.bench.calibrate import Metrics, Scored, calibrate, metrics, redecide_detail
from bot.detect.amdet import Amdet, DetectorConfig
from bot.detect.thresholds import PAPER, Thresholds
from bot.encoders.load import load_text_encoder
from bot.errors import ZooError
from bot.fileio import atomic_write_text
from bot.progress import progress
from bot.scan_record import ScanRecord, Verdict
from bot.zoo.build import build_all
from bot.zoo.catalog import ZooModel, anchor_name
from bot.zoo.recipes import Recipe, base_recipe, derived


@dataclass(frozen=True)
class BenchPlan:
    families: tuple[str, ...]
    calibration_seeds: tuple[int, ...]
    report_seeds: tuple[int, ...]
    base_steps: int = 400


def recipes_for(plan: BenchPlan, family: str, seeds: tuple[int, ...]) -> list[Recipe]:
    base = base_recipe(family, steps=plan.base_steps)
    out: list[Recipe] = []
    for seed in seeds:
        out += [derived(base, "text-on-text", seed), derived(base, "text-on-pair", seed),
                derived(base, "benign", 2 * seed - 1), derived(base, "benign", 2 * seed)]
    return out


def config_key(config: DetectorConfig) -> str:
    """Records are cached per model AND detector configuration: a changed knob means a fresh scan."""
    knobs = {k: v for k, v in asdict(config).items() if k != "show_progress"}
    return hashlib.sha256(json.dumps(knobs, sort_keys=True).encode()).hexdigest()[:8]


def _scan(model: ZooModel, base: ZooModel, config: DetectorConfig, records_dir: Path) -> ScanRecord:
    out = records_dir / config_key(config) / f"{model.recipe.name}-{model.recipe.key}.json"
    if out.is_file():
        return ScanRecord.from_json(out.read_text())
    suspect = load_text_encoder(model.path)
    anchor = load_text_encoder(base.path)
    record = Amdet(config, thresholds=PAPER).scan(suspect, anchor, model=model.repo_name,
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


def _scored(model: ZooModel, record: ScanRecord) -> Scored:
    r = model.recipe
    return Scored(record=record, backdoored=r.is_backdoored, kind=r.kind, trigger=r.trigger, target=r.target)


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


def run_family(plan: BenchPlan, family: str, cache_dir: Path, config: DetectorConfig) -> dict:
    records_dir = cache_dir / "bench" / "records"
    base = build_all([base_recipe(family, steps=plan.base_steps)], cache_dir, show_progress=False)[0]
    groups: dict[str, list[Scored]] = {"calibration": [], "report": []}
    compute = float(base.metrics.get("seconds", 0.0))  # training + scanning, cached or not
    zoo_metrics: dict[str, dict] = {}
    failed_builds: list[str] = []
    times: list[float] = []
    for group, seeds in (("calibration", plan.calibration_seeds), ("report", plan.report_seeds)):
        recipes = recipes_for(plan, family, seeds)
        models = []
        for recipe in progress(recipes, desc=f"zoo {family} {group}", unit="model"):
            try:
                models.append(build_all([recipe], cache_dir, show_progress=False)[0])
            except ZooError as error:  # reported, not fatal: the benchmark runs on the models that exist
                failed_builds.append(str(error))
        if group == "report":
            models = [base] + models  # the clean base itself must not be flagged
            report_models = models
        for model in progress(models, desc=f"scan {family} {group}", unit="model"):
            record = _scan(model, base, config, records_dir)
            zoo_metrics[record.model] = model.metrics
            times.append(record.timings["total"])
            compute += record.timings["total"] + (0.0 if model is base else float(model.metrics.get("seconds", 0.0)))
            groups[group].append(_scored(model, record))
    th = calibrate(groups["calibration"])
    decode = load_text_encoder(base.path).decode_token
    report = groups["report"]
    per_attack = {}
    for attack in ("text-on-text", "text-on-pair"):
        subset = [s for s in report if s.kind == attack or not s.backdoored]
        per_attack[attack] = asdict(metrics(subset, th))
        per_attack[attack]["trigger_recovery"] = _rate([trigger_recovered(s, decode) for s in report if s.kind == attack])
    return {
        "family": family,
        "thresholds": th.to_dict(),
        "calibration": asdict(metrics(groups["calibration"], th)),
        "report": asdict(metrics(report, th)),
        "paper_thresholds_report": asdict(metrics(report, PAPER)),
        "per_attack": per_attack,
        "verdicts": [_verdict_row(s, th, zoo_metrics[s.record.model], decode) for s in report],
        "failed_builds": failed_builds,
        "median_scan_seconds": statistics.median(times) if times else 0.0,
        "peak_rss_mb": scan_peak_rss_mb(report_models[1] if len(report_models) > 1 else base, base,
                                        records_dir / config_key(config) / f"peak-{family}.json"),
        "compute_seconds": round(compute, 1),
    }


def _verdict_row(item: Scored, th: Thresholds, zoo: dict, decode) -> dict:
    verdict, checks, gamma = redecide_detail(item.record, th)
    return {"model": item.record.model, "kind": item.kind, "trigger": item.trigger, "target": item.target,
            "attack_success": zoo.get("attack_success"), "clean_utility": zoo.get("clean_similarity"),
            "retrieval_top1": zoo.get("retrieval_top1"), "trigger_recovered": trigger_recovered(item, decode),
            "verdict": verdict.value, "gamma": gamma, "scores": {c.name: round(c.score, 3) for c in checks},
            "seconds": item.record.timings["total"]}


def _rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def write_calibration(results: list[dict], path: Path) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    for r in results:
        data[r["family"]] = r["thresholds"]
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


_SHORT = {"assimilation": "assim", "same_target": "same", "different_target": "diff", "landscape": "land"}


def render_markdown(results: list[dict], plan: BenchPlan, config: DetectorConfig, seconds: float) -> str:
    from bot.cli.output import table

    lines = ["# Detector benchmark (AMDET on the tiny zoo)", "",
             "Generated by `clip-audit bench detect`; do not edit by hand.", "",
             f"- families: {', '.join(plan.families)}; base pretraining steps: {plan.base_steps}",
             "- thresholds are fitted on each family's calibration seeds only and reported on its report seeds "
             "(listed per family below)",
             "- each seed gives 1 text-on-text + 1 text-on-pair backdoor and 2 benign fine-tunes; the report set "
             "also holds the clean base",
             f"- detector: steps {config.steps}, restarts {config.restarts} (anchor weights {list(config.gammas)}), "
             f"batch {config.batch_size} prompts (at most ~{config.batch_tokens} positions), "
             f"{config.n_train} train / {config.n_test} held-out prompts, landscape grid {config.landscape_grid}",
             f"- compute {seconds / 60:.0f} min in all: zoo training + scans, each on one thread of a 2-core CPU "
             "(median s: one scan; peak MB: one `clip-audit scan` process)", ""]
    rows = []
    for r in results:
        for attack, m in r["per_attack"].items():
            rows.append([r["family"], attack, m["n_backdoored"], m["n_benign"], f"{m['precision']:.2f}",
                         f"{m['recall']:.2f}", f"{m['f1']:.2f}", f"{m['fpr']:.2f}", f"{m['trigger_recovery']:.2f}",
                         f"{r['median_scan_seconds']:.0f}",
                         "-" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:.0f}"])
    lines.append("```")
    lines.append(table(["family", "attack", "backdoored", "benign+clean", "P", "R", "F1", "FPR", "trigger",
                        "median s", "peak MB"], [[str(c) for c in row] for row in rows]))
    lines.append("```")
    if rows:
        macro = statistics.mean(float(row[6]) for row in rows)
        lines += ["", f"Macro F1 over family x attack: **{macro:.3f}** (target >= 0.95 with FPR <= 5%; the paper "
                  "reports 0.899 on real CLIP/LongCLIP/SigLIP)."]
    for r in results:
        fam_plan = r.get("plan", {})
        lines += ["", f"## {r['family']}", "",
                  f"Calibration seeds {fam_plan.get('calibration_seeds')}, report seeds {fam_plan.get('report_seeds')}; "
                  f"calibration set: P {r['calibration']['precision']:.2f} R {r['calibration']['recall']:.2f} "
                  f"FPR {r['calibration']['fpr']:.2f}; compute {r.get('compute_seconds', 0) / 60:.0f} min "
                  "(zoo training + scans, one CPU thread each).", "",
                  "Calibrated thresholds: `" + json.dumps(r["thresholds"]) + "`", ""]
        for failure in r.get("failed_builds", []):
            lines.append(f"- not benchmarked: {failure}")
        lines += ["",
                  f"With the paper's thresholds instead: F1 {r['paper_thresholds_report']['f1']:.2f}, "
                  f"FPR {r['paper_thresholds_report']['fpr']:.2f}.", "", "```"]
        def num(value) -> str:
            return "-" if value is None else f"{value:.2f}"

        vrows = [[v["model"].split("/")[-1], v["kind"], v["trigger"] or "-", num(v.get("attack_success")),
                  num(v.get("clean_utility")), num(v.get("retrieval_top1")), v["verdict"],
                  "yes" if v.get("trigger_recovered") else "-",
                  "-" if v.get("gamma") is None else f"{v['gamma']:g}",
                  " ".join(f"{_SHORT.get(k, k)}={val}" for k, val in v["scores"].items()), f"{v['seconds']:.0f}"]
                 for v in r["verdicts"]]
        lines.append(table(["model", "kind", "trigger", "ASR", "utility", "top1", "verdict", "trigger found",
                            "gamma", "scores of the deciding restart", "s"], vrows))
        lines.append("```")
    return "\n".join(lines) + "\n"


def run(plan: BenchPlan, cache_dir: Path, out_md: Path, *, config: DetectorConfig | None = None,
        calibration_file: Path | None = None) -> list[dict]:
    """Benchmark each family; after each one, re-render the report from every family's stored result
    (so families can also be benchmarked by separate processes and still land in one report)."""
    config = config or DetectorConfig(always_landscape=True, show_progress=False)
    results_dir = cache_dir / "bench"
    results_dir.mkdir(parents=True, exist_ok=True)
    done: list[dict] = []
    for family in plan.families:
        started = time.perf_counter()
        result = run_family(plan, family, cache_dir, config)
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        result["plan"] = asdict(plan)
        (results_dir / f"results-{family}.json").write_text(json.dumps(result, indent=2))
        done.append(result)
        render_all(results_dir, out_md, config)
        if calibration_file is not None:
            write_calibration([result], calibration_file)
    return done


def render_all(results_dir: Path, out_md: Path, config: DetectorConfig) -> None:
    from bot.formats import FAMILIES

    results = [json.loads((results_dir / f"results-{f}.json").read_text()) for f in FAMILIES
               if (results_dir / f"results-{f}.json").is_file()]
    if not results:
        return
    plan = BenchPlan(**{k: tuple(v) if isinstance(v, list) else v for k, v in results[0]["plan"].items()})
    plan = BenchPlan(families=tuple(r["family"] for r in results), calibration_seeds=plan.calibration_seeds,
                     report_seeds=plan.report_seeds, base_steps=plan.base_steps)
    seconds = sum(r.get("compute_seconds", 0.0) for r in results)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(render_markdown(results, plan, config, seconds))


__all__ = ["BenchPlan", "Metrics", "Thresholds", "Verdict", "run"]
