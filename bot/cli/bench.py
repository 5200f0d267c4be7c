"""`clip-audit bench detect`."""

from __future__ import annotations

from pathlib import Path

from bot.cli.parser import add_zoo_options, subcommands


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (results go to docs/)")
    bsub = subcommands(p, "bench_command")
    d = bsub.add_parser("detect", help="detector precision/recall/F1/FPR and time on the zoo")
    add_zoo_options(d)
    d.add_argument("--calibration-seeds", type=int, default=3, help="seeds used to fit thresholds (default 3)")
    d.add_argument("--report-seeds", type=int, default=10, help="seeds reported on (default 10: 20 backdoored, 20 benign)")
    d.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    d.add_argument("--write-thresholds", action="store_true",
                   help="store the calibrated thresholds in bot/detect/calibrated_thresholds.json")
    d.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    d.set_defaults(func=_cmd_detect)


def _cmd_detect(args) -> int:
    import torch

    from bot.bench.detect import BenchPlan, run
    from bot.detect import thresholds
    from bot.errors import UsageError

    if args.calibration_seeds < 1 or args.report_seeds < 1:
        raise UsageError("--calibration-seeds and --report-seeds must be >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cal = tuple(range(1, args.calibration_seeds + 1))
    rep = tuple(range(100, 100 + args.report_seeds))
    plan = BenchPlan(families=tuple(args.families), calibration_seeds=cal, report_seeds=rep,
                     base_steps=args.base_steps)
    target = thresholds.CALIBRATED_FILE if args.write_thresholds else None
    results = run(plan, args.cache_dir, args.out, calibration_file=target)
    for r in results:
        m = r["report"]
        print(f"{r['family']}: P {m['precision']:.2f} R {m['recall']:.2f} F1 {m['f1']:.2f} FPR {m['fpr']:.2f} "
              f"median {r['median_scan_seconds']:.0f}s")
    print(f"report written to {args.out}")
    return 0
