"""`clip-audit demo`: the whole bot end to end against the bundled Hub emulator."""

from __future__ import annotations

from bot.cli.parser import add_cache_root_option


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole bot end to end against the bundled Hub emulator")
    add_cache_root_option(p, "where the zoo is built and the demo keeps its state")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from bot.demo import run_demo

    return run_demo(cache_dir=args.cache_root, device=args.device)
