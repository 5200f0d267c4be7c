"""Does a detector change keep the verdicts? Scans every calibration model of the benchmark with the shipped
configuration and the family's calibrated thresholds, and says which verdicts are wrong.

    .venv/bin/python benchmarks/calibration_verdicts.py --families clip longclip siglip [--seeds 1 2 3]

Zoo v2's calibration seeds and its clean bases only (docs/benchmarks.md): report seeds are never scanned
here, so this is the check to run while designing. Models not yet built are trained first (minutes each
on one thread). Prints one row per model: verdict, whether it is right, seconds, and each
restart's steps and why it stopped. Exit status 1 when any verdict is wrong.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["clip", "longclip", "siglip"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--kinds", nargs="+", help="only these model kinds (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from bot.bench.plan import BenchPlan, recipes_for
    from bot.cli.output import table
    from bot.detect.amdet import Amdet, DetectorConfig
    from bot.encoders.load import load_text_encoder
    from bot.scan_record import Verdict
    from bot.zoo.build import build
    from bot.zoo.recipes import base_recipe, v2_bases

    rows, wrong = [], 0
    for family in args.families:
        plan = BenchPlan(families=(family,), calibration_seeds=tuple(args.seeds), report_seeds=())
        recipes = [*v2_bases(family), *recipes_for(plan, family, "calibration")]
        for recipe in recipes:
            if args.kinds and recipe.kind not in args.kinds:
                continue
            model = build(recipe, args.cache_dir)
            base = build(base_recipe(family, seed=recipe.base.seed, corpus=recipe.base.corpus), args.cache_dir)
            anchor = load_text_encoder(base.path)
            record = Amdet(DetectorConfig(show_progress=False)).scan(load_text_encoder(model.path), anchor)
            right = (record.verdict is Verdict.BACKDOOR) == recipe.is_backdoored
            wrong += not right
            rows.append([family, recipe.name, recipe.kind, record.verdict.value, "yes" if right else "WRONG",
                         f"{record.timings['total']:.1f}",
                         " ".join(f"{c.gamma:g}:{c.steps}:{c.stop}" for c in record.candidates)])
            print(f"{recipe.name}: {record.verdict.value}", file=sys.stderr, flush=True)
    print(table(["family", "model", "kind", "verdict", "right", "s", "restarts (gamma:steps:stop)"], rows))
    print(f"{len(rows) - wrong}/{len(rows)} verdicts right")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
