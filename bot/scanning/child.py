"""The scanning child process (started by bot/scanning/isolation.py): parses untrusted weights, holds no token."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.errors import CHILD_FAILURE_OFFSET, ClipAuditError
from bot.settings import CACHE_ROOT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bot.scanning.child")
    p.add_argument("path", type=Path)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--anchor-cache", type=Path, default=CACHE_ROOT)
    p.add_argument("--model-name")
    p.add_argument("--revision")
    p.add_argument("--subfolder")
    p.add_argument("--anchor", type=Path)
    p.add_argument("--anchor-name")
    args = p.parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    from bot.detect.amdet import DetectorConfig
    from bot.fileio import atomic_write_text
    from bot.scanning.local import scan_path

    try:
        record = scan_path(args.path, anchor=args.anchor, device=args.device, anchor_cache=args.anchor_cache,
                           config=DetectorConfig(show_progress=False), model_name=args.model_name,
                           revision=args.revision, subfolder=args.subfolder, anchor_name=args.anchor_name)
    except ClipAuditError as exc:
        print(f"scan failed: {exc}", file=sys.stderr)
        return exc.exit_code + CHILD_FAILURE_OFFSET  # never read as a verdict: the parent reports the failure
    atomic_write_text(args.json, record.to_json())
    return record.verdict.exit_code


if __name__ == "__main__":
    sys.exit(main())
