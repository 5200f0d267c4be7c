"""Where a scan's time goes, per family: import, load, prepare, inversion, checks (held-out statistics and the
landscape), explain (trigger and target recovery), on the test zoo's models, one process per scan.

    .venv/bin/python benchmarks/profile_scan.py [--families clip longclip siglip] [--kinds benign text-on-pair]
                                                [--threads 1] [--cache-dir cache] [--landscape-grid N]
                                                [--plan family|first-zoo]

Needs the zoo's base and seed-1 models for each family (the test suite builds them; or
`clip-audit zoo build --families clip`). Each scan runs in a fresh interpreter so import time and peak
memory are its own, as for `clip-audit scan`. docs/performance.md records the figures before and after.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[3]))
from bot.detect.amdet import FIRST_ZOO_PLAN, Amdet, DetectorConfig
from bot.encoders.load import load_text_encoder
t1 = time.perf_counter()
suspect, anchor = load_text_encoder(sys.argv[1]), load_text_encoder(sys.argv[2])
t2 = time.perf_counter()
grid, plan = int(sys.argv[4]), (FIRST_ZOO_PLAN if sys.argv[5] == 'first-zoo' else {})
knobs = {**plan, **({'landscape_grid': grid} if grid else {})}
record = Amdet(DetectorConfig(show_progress=False, **knobs)).scan(suspect, anchor)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, **record.timings, "wall": t3 - t0,
                  "verdict": record.verdict.value, "steps": [c.steps for c in record.candidates],
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PHASES = ("import", "load", "prepare", "inversion", "checks", "explain", "total", "wall")


def _model(cache: Path, family: str, kind: str):
    from bot.zoo.build import load_zoo_model
    from bot.zoo.recipes import base_recipe, derived

    base = base_recipe(family)
    recipe = base if kind == "base" else derived(base, kind, 1)
    found = load_zoo_model(cache, recipe), load_zoo_model(cache, base)
    if None in found:
        raise SystemExit(f"{recipe.name} or its base is not built under {cache}/zoo: build the zoo first")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["clip", "longclip", "siglip"])
    parser.add_argument("--kinds", nargs="+", default=["benign", "text-on-pair"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    parser.add_argument("--landscape-grid", type=int, default=0, help="landscape grid side (default: the shipped one)")
    parser.add_argument("--plan", choices=("family", "first-zoo"), default="family",
                        help="restart plan: each family's shipped one, or the first zoo's (k 1, 300 steps, tokens)")
    args = parser.parse_args()
    from bot.cli.output import table

    rows = []
    for family in args.families:
        for kind in args.kinds:
            model, base = _model(args.cache_dir, family, kind)
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(model.path), str(base.path), str(args.threads),
                               str(args.landscape_grid), args.plan],
                                  capture_output=True, text=True, check=False)
            if proc.returncode:
                raise SystemExit(f"{family} {kind}: scan failed\n{proc.stderr[-2000:]}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append([family, kind, got["verdict"], *(f"{got.get(p, 0):.1f}" for p in PHASES),
                         "/".join(map(str, got["steps"])), f"{got['peak_mb']:.0f}"])
            print(f"{family} {kind}: done", file=sys.stderr, flush=True)
    print(table(["family", "model", "verdict", *PHASES, "steps", "peak MB"], rows))


if __name__ == "__main__":
    main()
