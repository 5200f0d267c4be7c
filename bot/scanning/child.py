"""The scanning child process (started by bot/scanning/isolation.py): parses untrusted weights, holds no token.

It reads the suspect, the candidate bases the parent fetched (a JSON list of bot.anchors.selection.LocalBase),
chooses the anchor by the weights, scans, and writes the record; its exit code is the verdict's, or an
error's plus CHILD_FAILURE_OFFSET.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bot.errors import CHILD_FAILURE_OFFSET, ClipAuditError


def read_anchors(path: Path | None) -> tuple[list, list[str]]:
    """(the fetched candidate bases, every registry id) from the file isolation.py wrote."""
    from bot.anchors.selection import LocalBase

    if path is None:
        return [], []
    data = json.loads(path.read_text())
    bases = [LocalBase(**{**item, "path": Path(item["path"])}) for item in data["candidates"]]
    return bases, list(data["registered"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bot.scanning.child")
    p.add_argument("path", type=Path)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--anchors", type=Path,
                   help="JSON: the registered bases fetched for this scan, and every registry id")
    p.add_argument("--model-name")
    p.add_argument("--revision")
    p.add_argument("--subfolder")
    p.add_argument("--max-bytes", type=int)
    args = p.parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    from bot.detect.amdet import DetectorConfig
    from bot.fileio import atomic_write_text
    from bot.scanning.local import scan_path

    try:
        fetched, registered = read_anchors(args.anchors)  # the parent chose them by the header fingerprint
        record = scan_path(args.path, candidates=lambda _: fetched, registered=registered, device=args.device,
                           config=DetectorConfig(show_progress=False), model_name=args.model_name,
                           revision=args.revision, subfolder=args.subfolder, max_bytes=args.max_bytes)
    except ClipAuditError as exc:
        print(f"scan failed: {exc}", file=sys.stderr)
        return exc.exit_code + CHILD_FAILURE_OFFSET  # never read as a verdict: the parent reports the failure
    atomic_write_text(args.json, record.to_json())
    return record.verdict.exit_code


if __name__ == "__main__":
    sys.exit(main())
