"""python -m bot.hub.emulator --data-dir DIR [--port N] [--token TOKEN=USER ...] [--webhook-url URL] [--seed FILE]

Secrets (tokens, webhook secret, admin token) can come from the environment instead of the command line, which
other local users can read: HUB_EMULATOR_TOKENS="tok1=alice,tok2=bot", HUB_EMULATOR_WEBHOOK_SECRET,
HUB_EMULATOR_ADMIN_TOKEN.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .server import run_emulator


def _parse_tokens(pairs: list[str]) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for pair in pairs:
        token, sep, user = pair.partition("=")
        if not sep or not token or not user:
            raise SystemExit("each token must be given as TOKEN=USER")
        tokens[token] = user
    return tokens


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub-emulator", description="Local Hugging Face Hub emulator")
    parser.add_argument("--data-dir", type=Path, required=True, help="where repos and blobs are persisted")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--token", action="append", default=[], metavar="TOKEN=USER", help="repeatable")
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--webhook-secret", default=None)
    parser.add_argument("--seed", type=Path, default=None, help="JSON seed file (see bot.hub.emulator.seed)")
    parser.add_argument("--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    env_tokens = [pair for pair in os.environ.get("HUB_EMULATOR_TOKENS", "").split(",") if pair.strip()]
    run_emulator(
        args.data_dir,
        args.host,
        args.port,
        tokens=_parse_tokens(env_tokens + args.token),
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret or os.environ.get("HUB_EMULATOR_WEBHOOK_SECRET"),
        admin_token=os.environ.get("HUB_EMULATOR_ADMIN_TOKEN"),
        seed_file=args.seed,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
