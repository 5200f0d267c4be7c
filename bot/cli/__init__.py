"""The `clip-audit` command: one parser, subcommands that register themselves, errors mapped to exit codes.

Exit codes (bot/errors.py; README, "Exit codes"): 0 success (scan: clean), 1 backdoor found, 2 error (or
inconclusive), 3 nothing scannable, 4 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from bot import __version__
from bot.cli import anchors, bench, calibrate, config, demo, scan, service, site, zoo
from bot.cli.parser import Parser, add_verbosity_options, command_parsers
from bot.errors import EXIT_CLEAN, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, ClipAuditError

# Each module adds its subcommands to the parser through `register(subparsers)`, in this order.
COMMAND_MODULES = (scan, anchors, calibrate, zoo, bench, service, demo, site, config)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="clip-audit", description="Audit CLIP-family checkpoints for hidden textual backdoors.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    add_verbosity_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMAND_MODULES:
        module.register(sub)
    for _, command in command_parsers(parser):
        add_verbosity_options(command, top=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose and args.quiet:
        parser.error("-v/--verbose and -q/--quiet cannot be used together")
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if not args.verbose:
            from transformers.utils import logging as transformers_logging

            transformers_logging.set_verbosity_error()  # config-validation chatter is not for our users
        return int(args.func(args) or 0)
    except SystemExit as exc:
        # A library giving up inside a command (uvicorn exits 3 when its port is taken, others 1) must not read
        # as a verdict ("nothing scannable", "backdoor found"); success and a usage error (Parser) pass through.
        if exc.code in (None, EXIT_CLEAN, EXIT_USAGE):
            raise
        print(f"clip-audit: error: {args.command} stopped (exit status {exc.code}); see the messages above",
              file=sys.stderr)
        return EXIT_ERROR
    except ClipAuditError as exc:
        print(f"clip-audit: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("clip-audit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug or a failure we did not foresee: one line, never exit 1
        if args.verbose:
            traceback.print_exc()
        print(f"clip-audit: unexpected error: {type(exc).__name__}: {_one_line(exc)} (run with -v for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR


def _one_line(error: BaseException) -> str:
    """An error's message as one line of plain text: it often quotes what an uploader wrote (a file name, a
    config value), whose line breaks, terminal escapes or bidi controls must not reshape what the user reads."""
    text = " ".join(str(error).split())
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)
