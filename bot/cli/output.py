"""Plain-text summaries for the terminal (the Hub and the site have their own templates)."""

from __future__ import annotations

from pathlib import Path

from bot.anchors.calibrations import BaseCalibration
from bot.publish.explain import explain_check
from bot.scan_record import ScanRecord


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def _anchor_how(record: ScanRecord) -> str:
    choice = record.anchor_choice
    if choice is None or choice.how == "none":
        return ""
    if choice.how == "explicit":
        return " (chosen with --anchor)"
    runner = f"; next {choice.runner_up} at {choice.runner_up_distance:.3f}" if choice.runner_up else ""
    return f" (nearest trusted base by the weights, distance {choice.distance:.3f}{runner})"


def summarize_record(record: ScanRecord) -> str:
    lines = [f"model:   {record.model}", f"family:  {record.family} ({record.format})",
             f"anchor:  {record.anchor or 'none'}{_anchor_how(record)}", f"verdict: {record.verdict.value.upper()}", ""]
    choice = record.anchor_choice
    if choice is not None and choice.how == "none" and choice.reason:
        lines.insert(-2, f"         no anchor: {choice.reason}")
    if choice is not None and choice.finding:
        lines.insert(-2, f"card:    {choice.finding}")
    # Not pass/fail: a check that "passes" is one that looks like a backdoor (bot/publish/explain.py).
    rows = [[c.name, f"{c.score:.3f}", f"{c.threshold:.3f}", explain_check(c, verdict=record.verdict).reading]
            for c in record.checks]
    lines.append(table(["check", "score", "threshold", "reading"], rows))
    confirmed = [t.token for t in record.triggers if t.confirmed]
    if record.triggers:
        lines.append("")
        lines.append("nearest trigger tokens: " + ", ".join(
            f"{t.token}{' (confirmed)' if t.confirmed else ''}" for t in record.triggers[:5]))
    if record.target_captions and (confirmed or record.verdict.value in ("backdoor", "natural-only")):
        lines.append("recovered target: " + "; ".join(t.caption for t in record.target_captions[:3]))
    if record.calibration:
        lines.append(f"thresholds: {record.calibration}")
    lines.append(f"time: {record.timings.get('total', 0):.1f}s on {record.device}")
    for note in record.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def summarize_calibration(result: BaseCalibration, *, stored: Path, moved_to: str | None = None) -> str:
    """What `clip-audit calibrate` prints at the end: the models, their verdicts, the thresholds, where stored."""
    rows = [[v.name, v.kind, v.trigger or "-", "-" if v.attack_success is None else f"{v.attack_success:.2f}",
             f"{v.drift:.4f}", v.verdict] for v in result.variants]
    th = result.calibration.thresholds.to_dict()
    fit, drift = result.fit, result.drift_baseline
    lines = [f"calibrated {result.anchor_id}@{result.sha[:12]} ({result.pin} pin; {result.family}, width "
             f"{result.calibration.hidden_size}, {result.calibration.layers} layers)",
             f"captions: {result.captions}", "",
             table(["model", "kind", "trigger", "ASR", "drift", "verdict (fitted thresholds)"], rows), "",
             "fitted thresholds: " + ", ".join(f"{name} {value:g}" for name, value in th.items()),
             f"on these models: F1 {fit['f1']:.2f}, precision {fit['precision']:.2f}, recall {fit['recall']:.2f}, "
             f"FPR {fit['fpr']:.2f}; a weight-drift threshold ({drift['cut']:.4f}) gets F1 {drift['f1']:.2f}"]
    lines += [f"left out: {reason}" for reason in result.skipped]
    if moved_to:
        lines.append(f"note: {result.anchor_id} has moved on the Hub to {moved_to[:12]}; the pin is kept")
    lines += [f"stored: {stored}",
              f"scans that choose {result.anchor_id} at {result.sha[:12]} as their anchor now decide with these "
              "thresholds and name them in their reports"]
    return "\n".join(lines)
