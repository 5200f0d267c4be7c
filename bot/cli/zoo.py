"""`clip-audit zoo build|list`: the tiny trained CLIP-family models the detector is benchmarked on."""

from __future__ import annotations

import sys

from bot.cli.parser import add_cache_root_option, add_zoo_options, subcommands
from bot.errors import EXIT_CLEAN, EXIT_ERROR, UsageError


def register(sub) -> None:
    p = sub.add_parser("zoo", help="build the zoo of tiny trained CLIP-family models")
    zsub = subcommands(p, "zoo_command")
    b = zsub.add_parser("build", help="build (or reuse) zoo models under CACHE/zoo")
    add_zoo_options(b)
    b.add_argument("--per-kind", type=int, default=1, help="backdoored models per attack and 2x benign (default 1)")
    b.add_argument("--seed-offset", type=int, default=0,
                   help="derived models take seeds from SEED_OFFSET+1 on (default 0)")
    b.set_defaults(func=_cmd_build)
    ls = zsub.add_parser("list", help="list built zoo models")
    add_cache_root_option(ls, "the zoo lives in CACHE_ROOT/zoo")
    ls.set_defaults(func=_cmd_list)


def _cmd_build(args) -> int:
    from bot.zoo.build import build_all
    from bot.zoo.recipes import plan

    if args.per_kind < 0 or args.base_steps < 1:
        raise UsageError("--per-kind must be >= 0 and --base-steps >= 1")
    zoo_plan = plan("cli", families=tuple(args.families), per_kind=args.per_kind, seed_offset=args.seed_offset,
                    base_steps=args.base_steps)
    failures: list = []
    models = build_all(zoo_plan.recipes, args.cache_root, failures=failures)
    _print_zoo(models)
    for failure in failures:
        print(f"not built: {failure}", file=sys.stderr)
    return EXIT_ERROR if failures else EXIT_CLEAN


def _cmd_list(args) -> int:
    from bot.zoo.catalog import built_models

    models = built_models(args.cache_root)
    if not models:
        print(f"no zoo models under {args.cache_root / 'zoo'}; run `clip-audit zoo build`")
        return EXIT_CLEAN
    _print_zoo(models)
    return EXIT_CLEAN


def _print_zoo(models) -> None:
    from bot.cli.output import table

    rows = []
    for m in models:
        r, met = m.recipe, m.metrics
        rows.append([r.name, r.kind, r.trigger or "-", (r.target or "-")[:40],
                     f"{met.get('retrieval_top1', 0):.2f}",
                     f"{met['attack_success']:.2f}" if "attack_success" in met else "-", str(m.path)])
    print(table(["model", "kind", "trigger", "target", "top1", "ASR", "path"], rows))
