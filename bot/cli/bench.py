"""`clip-audit bench detect --stage calibrate|report`."""

from __future__ import annotations

from pathlib import Path

from bot.bench.plan import STAGES, BenchPlan
from bot.cli.parser import add_zoo_options, subcommands


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (results go to docs/)")
    bsub = subcommands(p, "bench_command")
    d = bsub.add_parser("detect", help="detector precision/recall/F1/FPR beside two baselines on zoo v2")
    add_zoo_options(d, base_steps=False)  # zoo v2's bases are fixed (bot/zoo/recipes.py)
    d.add_argument("--stage", choices=STAGES, required=True,
                   help="calibrate: fit thresholds on the calibration seeds; report: the frozen detector and "
                        "the baselines on the report seeds")
    d.add_argument("--calibration-seeds", type=int, nargs="+", default=list(BenchPlan.calibration_seeds),
                   metavar="SEED", help="seeds the thresholds are fitted on (default 1 2 3)")
    d.add_argument("--report-seeds", type=int, nargs="+", default=list(BenchPlan.report_seeds), metavar="SEED",
                   help="seeds reported on, never used while designing (default 1001-1004)")
    d.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"),
                   help="report stage: the page to write (default docs/benchmarks.md)")
    d.add_argument("--write-thresholds", action="store_true",
                   help="calibrate stage: store the fitted thresholds in bot/detect/calibrated_thresholds.json")
    d.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    d.set_defaults(func=_cmd_detect)


def _cmd_detect(args) -> int:
    import torch

    from bot.bench.detect import run
    from bot.detect import thresholds
    from bot.errors import UsageError

    if set(args.calibration_seeds) & set(args.report_seeds):
        raise UsageError("calibration and report seeds must not overlap")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    plan = BenchPlan(families=tuple(args.families), calibration_seeds=tuple(args.calibration_seeds),
                     report_seeds=tuple(args.report_seeds))
    target = thresholds.CALIBRATED_FILE if args.write_thresholds else None
    results = run(plan, args.cache_root, args.out, stage=args.stage, calibration_file=target)
    for r in results:
        if args.stage == "calibrate":
            cv, fit = r["cross_validated"], r["fit"]
            held_out = "one seed: no leave-one-seed-out" if cv is None else \
                f"leave-one-seed-out F1 {cv['f1']:.2f} FPR {cv['fpr']:.2f}"
            print(f"{r['family']}: {r['n_models']} models; fitted F1 {fit['f1']:.2f} FPR {fit['fpr']:.2f}; {held_out}; "
                  f"drift cut {r['drift_cut']:.4f}")
        else:
            m = r["rows"][0]["method"]
            print(f"{r['family']}: F1 {m['f1']:.2f} FPR {m['fpr']:.2f} (drift baseline "
                  f"{r['rows'][0]['drift']['f1']:.2f})")
    if args.stage == "report":
        print(f"report written to {args.out}")
    return 0
