"""The one argparse helper every `clip-audit` subcommand builds on: usage errors exit 4, settings from flags."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.errors import EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which is "error or inconclusive" here; usage is 4."""

    def error(self, message: str) -> None:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def subcommands(parser: argparse.ArgumentParser, dest: str) -> argparse._SubParsersAction:
    """Required subcommands whose parsers are `Parser`s too (so nested usage errors also exit 4)."""
    return parser.add_subparsers(dest=dest, required=True, parser_class=Parser)


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """The options every command that reads Settings accepts."""
    parser.add_argument("--config", type=Path, help="TOML settings file (default ./clip-audit.toml when present)")
    parser.add_argument("--endpoint", help="Hub endpoint (default HF_ENDPOINT or https://huggingface.co)")
    parser.add_argument("--db-path", type=Path, help="SQLite state database (default: the db_path setting)")
    parser.add_argument("--cache-dir", type=Path, help="download cache (default: the cache_dir setting)")


def add_zoo_options(parser: argparse.ArgumentParser, *, base_steps: bool = True) -> None:
    """Which zoo: the families, the bases' pretraining length and where the zoo lives (zoo build, bench)."""
    from bot.formats import FAMILIES
    from bot.settings import CACHE_ROOT

    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES,
                        help="model families (default: all)")
    if base_steps:
        parser.add_argument("--base-steps", type=int, default=400, help="pretraining steps per base (default 400)")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_ROOT,
                        help=f"the zoo lives in CACHE_DIR/zoo (default {CACHE_ROOT})")


_SETTING_FLAGS = ("endpoint", "device", "db_path", "cache_dir", "outbox_dir", "anchor_cache")


def settings_from_args(args: argparse.Namespace):
    """Settings with the command line's flags on top of defaults, the TOML file and the environment."""
    from bot.settings import load_settings

    overrides: dict[str, object] = {}
    for name in _SETTING_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = str(value)
    if getattr(args, "dry_run", False):
        overrides["dry_run"] = "true"
    return load_settings(config_file=getattr(args, "config", None), overrides=overrides)
