"""`hub-emulator` (also `python -m hub_emulator`): serve a local Hub the real huggingface_hub client can use.

Secrets can come from the environment instead of the command line, which other local users can read:
HUB_EMULATOR_TOKENS="tok1=alice,tok2=bot", HUB_EMULATOR_WEBHOOK_SECRET, HUB_EMULATOR_ADMIN_TOKEN.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .server import EmulatorConfig, build_state, create_server, serve_until_interrupted

EXIT_USAGE = 4  # the same code clip-audit uses for a wrong command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


_SHOWN_PREFIX = 4  # of a token long enough that the prefix gives little of it away
_MIN_LEN_TO_SHOW_PREFIX = 12


def _redacted(token: str) -> str:
    """Enough to tell which value was wrong, never the secret: a short token is not echoed at all."""
    if len(token) >= _MIN_LEN_TO_SHOW_PREFIX:
        return f"{token[:_SHOWN_PREFIX]}..."
    return f"a {len(token)}-character value"


def parse_tokens(pairs: list[str]) -> dict[str, str]:
    """["tok=alice", ...] -> {"tok": "alice"}; a malformed pair is a usage error that never echoes the token."""
    tokens: dict[str, str] = {}
    for pair in pairs:
        token, sep, user = pair.partition("=")
        if not sep or not token or not user:
            raise ValueError(f"a token must look like TOKEN=USER, got {_redacted(token)}")
        tokens[token] = user
    return tokens


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hub-emulator", description="A local Hugging Face Hub for tests and demos.")
    parser.add_argument("--data-dir", type=Path, default=Path("cache/hub-emulator"),
                        help="where repos and blobs persist (default cache/hub-emulator)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument("--port", type=int, default=8900, help="TCP port (default 8900; 0 picks a free one)")
    parser.add_argument("--token", action="append", default=[], metavar="TOKEN=USER",
                        help="an accepted token and its user (repeatable; or HUB_EMULATOR_TOKENS)")
    parser.add_argument("--webhook-url", help="POST webhook events (discussions, comments) here")
    parser.add_argument("--webhook-secret", help="sent as X-Webhook-Secret (or HUB_EMULATOR_WEBHOOK_SECRET)")
    parser.add_argument("--seed", type=Path, help="JSON seed file (see hub_emulator/seed.py)")
    parser.add_argument("--seed-zoo", type=Path, metavar="CACHE_DIR",
                        help="upload every built zoo model under CACHE_DIR/zoo (e.g. cache) at start")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    env_tokens = [pair for pair in os.environ.get("HUB_EMULATOR_TOKENS", "").split(",") if pair.strip()]
    try:
        tokens = parse_tokens(env_tokens + args.token)
    except ValueError as exc:
        print(f"hub-emulator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = EmulatorConfig(data_dir=args.data_dir, host=args.host, port=args.port, tokens=tokens,
                            webhook_url=args.webhook_url,
                            webhook_secret=args.webhook_secret or os.environ.get("HUB_EMULATOR_WEBHOOK_SECRET"),
                            admin_token=os.environ.get("HUB_EMULATOR_ADMIN_TOKEN"), seed_file=args.seed)
    state = build_state(config)
    if args.seed_zoo is not None:
        from .zoo_seed import seed_zoo

        created = seed_zoo(state, args.seed_zoo)
        print(f"seeded {len(created)} zoo repo(s) from {args.seed_zoo / 'zoo'}", flush=True)
    try:
        server = create_server(config, state)
    except OSError as exc:
        print(f"hub-emulator: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"Hub emulator on {server.url} (data in {args.data_dir}); Ctrl-C stops it", flush=True)
    serve_until_interrupted(server)
    return 0
