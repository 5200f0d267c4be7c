"""Commands beyond scan and zoo: benchmarks, the Hub bot, the site (registered here to keep cli.py small)."""

from __future__ import annotations


def add_commands(sub) -> None:
    from bot.bench.cli import add_bench

    add_bench(sub)
