"""The `clip-audit` command.

Exit codes: 0 clean, 1 backdoor found, 2 error (or inconclusive), 3 nothing scannable, 4 usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bot.errors import EXIT_BACKDOOR, EXIT_CLEAN, EXIT_ERROR, EXIT_USAGE, ClipAuditError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2; usage errors are 4 here
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _add_scan(sub) -> None:
    p = sub.add_parser("scan", help="scan a local checkpoint directory for a textual backdoor")
    p.add_argument("path", type=Path, help="checkpoint directory (transformers, open_clip or diffusers layout)")
    p.add_argument("--anchor", type=Path, help="clean base model directory the suspect was fine-tuned from")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--json", type=Path, dest="json_out", help="write the scan record (JSON) here")
    p.add_argument("--subfolder", help="diffusers: which text encoder folder (default text_encoder)")
    p.add_argument("--cache-dir", type=Path, default=Path("cache"), help="where zoo anchors live (default ./cache)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_scan)


def _cmd_scan(args) -> int:
    from bot.detect.amdet import DetectorConfig
    from bot.detect.record import Verdict
    from bot.report_text import summarize_record
    from bot.scan import scan_path

    if not args.path.exists():
        raise UsageError(f"{args.path} does not exist")
    config = DetectorConfig(seed=args.seed, show_progress=not args.quiet)
    record = scan_path(args.path, anchor=args.anchor, device=args.device, config=config, cache_dir=args.cache_dir,
                       subfolder=args.subfolder)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(record.to_json())
    print(summarize_record(record))
    if record.verdict == Verdict.BACKDOOR:
        return EXIT_BACKDOOR
    if record.verdict == Verdict.INCONCLUSIVE:
        return EXIT_ERROR
    return EXIT_CLEAN


def _add_zoo(sub) -> None:
    from bot.zoo.architectures import FAMILIES

    p = sub.add_parser("zoo", help="build the zoo of tiny trained CLIP-family models")
    zsub = p.add_subparsers(dest="zoo_command", required=True, parser_class=_Parser)
    b = zsub.add_parser("build", help="build (or reuse) zoo models under CACHE/zoo")
    b.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    b.add_argument("--per-kind", type=int, default=1, help="backdoored models per attack and 2x benign (default 1)")
    b.add_argument("--seed-offset", type=int, default=0)
    b.add_argument("--base-steps", type=int, default=400, help="pretraining steps per base (default 400)")
    b.add_argument("--cache-dir", type=Path, default=Path("cache"))
    b.set_defaults(func=_cmd_zoo_build)
    ls = zsub.add_parser("list", help="list built zoo models")
    ls.add_argument("--cache-dir", type=Path, default=Path("cache"))
    ls.set_defaults(func=_cmd_zoo_list)


def _cmd_zoo_build(args) -> int:
    from bot.zoo.build import build_all
    from bot.zoo.recipes import plan

    if args.per_kind < 0 or args.base_steps < 1:
        raise UsageError("--per-kind must be >= 0 and --base-steps >= 1")
    zoo_plan = plan("cli", families=tuple(args.families), per_kind=args.per_kind, seed_offset=args.seed_offset,
                    base_steps=args.base_steps)
    failures: list = []
    models = build_all(zoo_plan.recipes, args.cache_dir, failures=failures)
    _print_zoo(models)
    for failure in failures:
        print(f"not built: {failure}", file=sys.stderr)
    return EXIT_ERROR if failures else EXIT_CLEAN


def _cmd_zoo_list(args) -> int:
    import json

    from bot.zoo.build import ZooModel
    from bot.zoo.recipes import BaseRecipe, Recipe

    models = []
    for metrics in sorted((args.cache_dir / "zoo").glob("*/metrics.json")):
        data = json.loads((metrics.parent / "recipe.json").read_text())
        data["base"] = BaseRecipe(**data["base"])
        models.append(ZooModel(recipe=Recipe(**data), path=metrics.parent, metrics=json.loads(metrics.read_text())))
    if not models:
        print(f"no zoo models under {args.cache_dir / 'zoo'}; run `clip-audit zoo build`")
        return EXIT_CLEAN
    _print_zoo(models)
    return EXIT_CLEAN


def _print_zoo(models) -> None:
    from bot.report_text import table

    rows = []
    for m in models:
        r, met = m.recipe, m.metrics
        rows.append([r.name, r.kind, r.trigger or "-", (r.target or "-")[:40],
                     f"{met.get('retrieval_top1', 0):.2f}",
                     f"{met['attack_success']:.2f}" if "attack_success" in met else "-", str(m.path)])
    print(table(["model", "kind", "trigger", "target", "top1", "ASR", "path"], rows))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="clip-audit", description="Audit CLIP-family checkpoints for hidden textual backdoors.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_scan(sub)
    _add_zoo(sub)
    from bot.cli_more import add_commands

    add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()  # config-validation chatter is not for our users
    try:
        return int(args.func(args) or 0)
    except ClipAuditError as exc:
        print(f"clip-audit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("clip-audit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
