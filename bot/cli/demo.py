"""`clip-audit demo`: the whole bot end to end against the bundled Hub emulator."""

from __future__ import annotations

from pathlib import Path

from bot.settings import CACHE_ROOT


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole bot end to end against the bundled Hub emulator")
    p.add_argument("--cache-dir", type=Path, default=CACHE_ROOT,
                   help=f"where the zoo is built and the demo keeps its state (default {CACHE_ROOT})")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from bot.demo import run_demo

    return run_demo(cache_dir=args.cache_dir, device=args.device)
