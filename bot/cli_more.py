"""Commands beyond scan and zoo: benchmarks, the Hub bot, the site (registered here to keep cli.py small)."""

from __future__ import annotations


def add_commands(sub) -> None:
    from bot.bench.cli import add_bench
    from bot.cli_bot import add_bot_commands, add_demo
    from bot.site.cli import add_site

    add_bench(sub)
    add_bot_commands(sub)
    add_demo(sub)
    add_site(sub)
