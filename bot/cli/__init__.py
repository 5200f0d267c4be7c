"""The `clip-audit` command: one parser, subcommands that register themselves, errors mapped to exit codes.

Exit codes: 0 clean, 1 backdoor found, 2 error (or inconclusive), 3 nothing scannable, 4 usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from bot.cli import anchors, bench, calibrate, demo, scan, service, site, zoo
from bot.cli.parser import Parser
from bot.errors import EXIT_CLEAN, EXIT_ERROR, EXIT_USAGE, ClipAuditError

# Each module adds its subcommands to the parser through `register(subparsers)`, in this order.
COMMAND_MODULES = (scan, anchors, calibrate, zoo, bench, service, demo, site)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="clip-audit", description="Audit CLIP-family checkpoints for hidden textual backdoors.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
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
        print(f"clip-audit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("clip-audit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug or a failure we did not foresee: one line, never exit 1
        if args.verbose:
            traceback.print_exc()
        print(f"clip-audit: unexpected error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR
