"""`clip-audit config example`: every setting, its comment, environment variable and default, as a TOML file."""

from __future__ import annotations

import sys

from bot.cli.parser import subcommands
from bot.errors import EXIT_CLEAN


def register(sub) -> None:
    p = sub.add_parser("config", help="the settings file")
    csub = subcommands(p, "config_command")
    example = csub.add_parser("example", help="print an example clip-audit.toml: every setting with its comment "
                                              "and default, commented out (docs/clip-audit.example.toml)")
    example.set_defaults(func=_cmd_example)


def _cmd_example(args) -> int:
    from bot.settings_doc import example_toml

    sys.stdout.write(example_toml())
    return EXIT_CLEAN
