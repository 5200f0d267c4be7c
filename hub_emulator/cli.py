"""`hub-emulator` (also `python -m hub_emulator`): serve a local Hub the real huggingface_hub client can use.

Secrets can come from the environment instead of the command line, which other local users can read:
HUB_EMULATOR_TOKENS="tok1=alice,tok2=bot", HUB_EMULATOR_WEBHOOK_SECRET, HUB_EMULATOR_ADMIN_TOKEN. Without
HUB_EMULATOR_ADMIN_TOKEN an admin token is generated and written to <data-dir>/admin-token (mode 0600).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .faults import Fault, fault_from_spec
from .server import EmulatorConfig, admin_token_path, build_state, create_server, serve_until_interrupted
from .webhooks import DEFAULT_BACKOFF_S, DEFAULT_MAX_ATTEMPTS

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


def parse_fault(spec: str) -> Fault:
    """--fault '{"kind": "status", "status": 503, "count": 3}' (the admin API's JSON, faults.fault_from_spec)."""
    try:
        payload = json.loads(spec)
    except ValueError:
        raise ValueError(f"--fault takes a JSON object, got {spec[:40]!r}") from None
    if not isinstance(payload, dict):
        raise ValueError("--fault takes a JSON object")
    return fault_from_spec(payload)


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
    parser.add_argument("--webhook-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS,
                        help=f"tries per webhook delivery, retries included (default {DEFAULT_MAX_ATTEMPTS})")
    parser.add_argument("--webhook-backoff", type=float, default=DEFAULT_BACKOFF_S, metavar="SECONDS",
                        help="wait before a delivery's 2nd try, doubled for each later one "
                             f"(default {DEFAULT_BACKOFF_S:g})")
    parser.add_argument("--fault", action="append", default=[], metavar="JSON",
                        help='inject a fault from the start, e.g. \'{"kind": "status", "status": 503, "count": 3}\' '
                             "(repeatable; kinds status, drop, stall, slow: see hub_emulator/faults.py)")
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
        faults = [parse_fault(spec) for spec in args.fault]
        config = EmulatorConfig(data_dir=args.data_dir, host=args.host, port=args.port, tokens=tokens,
                                webhook_url=args.webhook_url,
                                webhook_secret=args.webhook_secret or os.environ.get("HUB_EMULATOR_WEBHOOK_SECRET"),
                                webhook_max_attempts=args.webhook_attempts, webhook_backoff_s=args.webhook_backoff,
                                admin_token=os.environ.get("HUB_EMULATOR_ADMIN_TOKEN") or None, seed_file=args.seed)
        state = build_state(config)
    except ValueError as exc:
        print(f"hub-emulator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for fault in faults:
        state.faults.add(fault)
    if args.seed_zoo is not None:
        from .zoo_seed import seed_zoo

        created = seed_zoo(state, args.seed_zoo)
        print(f"seeded {len(created)} zoo repo(s) from {args.seed_zoo / 'zoo'}", flush=True)
    try:
        server = create_server(config, state)
    except OSError as exc:
        print(f"hub-emulator: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not os.environ.get("HUB_EMULATOR_ADMIN_TOKEN"):
        print(f"admin token written to {admin_token_path(args.data_dir)}", flush=True)
    print(f"Hub emulator on {server.url} (data in {args.data_dir}); Ctrl-C stops it", flush=True)
    serve_until_interrupted(server)
    return 0
