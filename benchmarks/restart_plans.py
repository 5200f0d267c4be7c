"""Try a restart plan on zoo v2's calibration models: each restart's checks, the verdict and the time.

    .venv/bin/python benchmarks/restart_plans.py --family clip --seeds 3 --kinds multi-token benign-domain \
        --k 4 --gammas 0.1 1 1 --modes tokens pooled pooled

A design tool for the detector (docs/detector.md, "Zoo v2"): calibration seeds only, never report seeds.
Models that are not built yet are skipped (build them with benchmarks/calibration_verdicts.py or
`clip-audit bench detect --stage calibrate`). Thresholds are the shipped ones for the family.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True, choices=["clip", "longclip", "siglip"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--kinds", nargs="+", help="only these model kinds (default: all)")
    # restart-plan knobs left out are the family's shipped plan (bot/detect/amdet.py FAMILY_PLANS)
    parser.add_argument("--k", type=int, help="pseudo-tokens per restart")
    parser.add_argument("--steps", type=int, help="max steps per restart")
    parser.add_argument("--gammas", nargs="+", type=float, default=[0.1, 1.0, 1.0])
    parser.add_argument("--positions", nargs="+", default=["start"], choices=["start", "middle", "end"])
    parser.add_argument("--modes", nargs="+", choices=["tokens", "pooled"])
    parser.add_argument("--v-scale", choices=["unit", "token"])
    parser.add_argument("--v-max-norm", type=float,
                        help="bound on each pseudo-token's norm (x the largest token's; inf: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from bot.bench.detect import bench_config
    from bot.bench.plan import BenchPlan, recipes_for
    from bot.detect.amdet import Amdet
    from bot.encoders.load import load_text_encoder
    from bot.zoo.catalog import load_zoo_model
    from bot.zoo.recipes import base_recipe

    restarts = max(len(args.gammas), len(args.positions), len(args.modes or []))
    config = bench_config(k=args.k, steps=args.steps, gammas=tuple(args.gammas), positions=tuple(args.positions),
                          modes=tuple(args.modes) if args.modes else None, restarts=restarts, v_scale=args.v_scale,
                          v_max_norm=args.v_max_norm)
    plan = BenchPlan(families=(args.family,), calibration_seeds=tuple(args.seeds))
    for recipe in recipes_for(plan, args.family, "calibration"):
        if args.kinds and recipe.kind not in args.kinds:
            continue
        model = load_zoo_model(args.cache_dir, recipe)
        base = load_zoo_model(args.cache_dir, base_recipe(args.family, seed=recipe.base.seed,
                                                          corpus=recipe.base.corpus))
        if model is None or base is None:
            print(f"{recipe.name}: not built, skipped", file=sys.stderr)
            continue
        record = Amdet(config).scan(load_text_encoder(model.path), load_text_encoder(base.path))
        restarts_text = " | ".join(
            f"{c.position} {c.mode} g{c.gamma:g} {c.steps} {c.stop} "
            + " ".join(f"{check.name}={check.score:.2f}" for check in c.checks) for c in record.candidates)
        print(f"{recipe.name} (base {recipe.base.name}, drift {model.metrics.get('text_drift')}): "
              f"{record.verdict.value} in {record.timings['total']:.0f} s; triggers "
              f"{[t.token for t in record.triggers[:3]]} :: {restarts_text}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
