"""Scan one zoo-v2 base with another as the anchor: what the landscape says about a clean model's own
directions when the anchor is a stranger (the premise of the natural-backdoor filter).

    .venv/bin/python benchmarks/cross_base.py --family clip

Pairs: the natural-trigger base against the first base, the alt base against the first base, and the
first base against the natural-trigger base. Every restart's checks and landscape are printed
(docs/detector.md, "The landscape filter, demoted"). Builds the bases when they are missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PAIRS = (((4, "natural"), (0, "shapes")), ((3, "alt"), (0, "shapes")), ((0, "shapes"), (4, "natural")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="clip", choices=["clip", "longclip", "siglip"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from bot.bench.detect import bench_config
    from bot.detect.amdet import Amdet
    from bot.encoders.load import load_text_encoder
    from bot.zoo.build import build_all
    from bot.zoo.recipes import base_recipe

    config = bench_config()
    for (seed, corpus), (anchor_seed, anchor_corpus) in PAIRS:
        suspect, anchor = build_all([base_recipe(args.family, seed=seed, corpus=corpus),
                                     base_recipe(args.family, seed=anchor_seed, corpus=anchor_corpus)],
                                    args.cache_dir, show_progress=False)
        record = Amdet(config).scan(load_text_encoder(suspect.path), load_text_encoder(anchor.path))
        restarts = " | ".join(f"{c.mode} g{c.gamma:g} {c.steps} {c.stop} "
                              + " ".join(f"{k.name}={k.score:.2f}" for k in c.checks) for c in record.candidates)
        print(f"{corpus} base vs anchor {anchor_corpus} base: {record.verdict.value} "
              f"in {record.timings['total']:.0f} s :: {restarts}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
