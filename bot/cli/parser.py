"""The one argparse helper every `clip-audit` subcommand builds on: usage errors exit 4, settings from flags."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
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


def add_alias(parser: argparse.ArgumentParser, flag: str, *, dest: str, **kwargs: object) -> None:
    """An older spelling of an option, still accepted (scripts may rely on it) and left out of --help."""
    parser.add_argument(flag, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]


VERBOSE_HELP = "debug logging, and the traceback of an unexpected error"
QUIET_HELP = "errors only: no progress bars, no warnings"


def add_verbosity_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-v and -q, before the subcommand (`top`) or after it; given after it, they are not reset by its defaults."""
    default: object = False if top else argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help=VERBOSE_HELP)
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help=QUIET_HELP)


def command_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) \
        -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command's parser below `parser`, depth first, with its command path (("anchors", "list"))."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from command_parsers(sub, (*path, name))


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """The options every command that reads Settings accepts."""
    parser.add_argument("--config", type=Path, help="TOML settings file (default ./clip-audit.toml when present)")
    parser.add_argument("--endpoint", help="Hub endpoint (default HF_ENDPOINT or https://huggingface.co)")
    parser.add_argument("--db-path", type=Path, help="SQLite state database (default: the db_path setting)")
    add_alias(parser, "--db", dest="db_path", type=Path)
    parser.add_argument("--cache-dir", type=Path,
                        help="where Hub downloads are cached (default: the cache_dir setting, cache/hub)")


def add_cache_root_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--cache-root: the folder clip-audit's local files live under (the zoo in CACHE_ROOT/zoo). Not --cache-dir,
    which is always the download cache (the cache_dir setting); --cache-dir stays accepted here as before."""
    from bot.settings import CACHE_ROOT

    parser.add_argument("--cache-root", type=Path, default=CACHE_ROOT, help=f"{what} (default {CACHE_ROOT})")
    add_alias(parser, "--cache-dir", dest="cache_root", type=Path)


def add_zoo_options(parser: argparse.ArgumentParser, *, base_steps: bool = True) -> None:
    """Which zoo: the families, the bases' pretraining length and where the zoo lives (zoo build, bench)."""
    from bot.formats import FAMILIES

    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES,
                        help="model families (default: all)")
    if base_steps:
        parser.add_argument("--base-steps", type=int, default=400, help="pretraining steps per base (default 400)")
    add_cache_root_option(parser, "the zoo lives in CACHE_ROOT/zoo")


_SETTING_FLAGS = ("endpoint", "device", "db_path", "cache_dir", "outbox_dir", "anchor_cache", "queue_backend",
                  "webhook_host", "webhook_port")


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
