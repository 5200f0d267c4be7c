"""How far fine-tunes sit from their own base and from an unrelated one: the figures behind
bot/anchors/selection.py's MAX_FINE_TUNE_DISTANCE.

    .venv/bin/python benchmarks/anchor_distance.py [--cache-dir cache]

Reads every finished zoo model under CACHE/zoo (build them with `clip-audit zoo build`, and a second base with
`python -c "from bot.zoo.build import build; from bot.zoo.recipes import base_recipe; build(base_recipe('clip',
seed=1), 'cache')"`) and prints, per model, the distance to each base of its family.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.anchors.selection import MAX_FINE_TUNE_DISTANCE, weight_distance
from bot.cli.output import table
from bot.encoders.load import load_text_encoder
from bot.zoo.catalog import anchor_name, built_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = parser.parse_args()
    models = built_models(args.cache_dir)
    bases = {anchor_name(m.recipe): m for m in models if m.recipe.kind == "base"}
    rows = []
    for model in models:
        suspect = load_text_encoder(model.path)
        for name, base in sorted(bases.items()):
            if base.recipe.family != model.recipe.family:
                continue
            own = base.recipe.base == model.recipe.base
            distance = weight_distance(suspect, load_text_encoder(base.path))
            rows.append([model.path.name, model.recipe.kind, name, "own base" if own else "unrelated",
                         f"{distance:.4f}"])
    print(table(["model", "kind", "base", "relation", "distance"], rows))
    print(f"\nMAX_FINE_TUNE_DISTANCE = {MAX_FINE_TUNE_DISTANCE}")


if __name__ == "__main__":
    main()
