"""The scanning child process (see bot/pipeline.py): parses untrusted weights, holds no token."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.errors import EXIT_BACKDOOR, EXIT_CLEAN, EXIT_ERROR, ClipAuditError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bot.scan_child")
    p.add_argument("path", type=Path)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", type=Path, default=Path("cache"))
    p.add_argument("--model-name")
    p.add_argument("--revision")
    p.add_argument("--subfolder")
    p.add_argument("--anchor", type=Path)
    p.add_argument("--anchor-name")
    args = p.parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    from bot.detect.amdet import DetectorConfig
    from bot.detect.record import Verdict
    from bot.scan import scan_path

    try:
        record = scan_path(args.path, anchor=args.anchor, device=args.device, cache_dir=args.cache_dir,
                           config=DetectorConfig(show_progress=False), model_name=args.model_name,
                           revision=args.revision, subfolder=args.subfolder, anchor_name=args.anchor_name)
    except ClipAuditError as exc:
        print(f"scan failed: {exc}", file=sys.stderr)
        return exc.exit_code + 10  # distinct from verdict exit codes: the parent reports the failure
    args.json.write_text(record.to_json())
    return EXIT_BACKDOOR if record.verdict == Verdict.BACKDOOR else (
        EXIT_ERROR if record.verdict == Verdict.INCONCLUSIVE else EXIT_CLEAN)


if __name__ == "__main__":
    sys.exit(main())
