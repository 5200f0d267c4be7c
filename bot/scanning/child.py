"""The scanning child process (started by bot/scanning/isolation.py): parses untrusted weights, holds no token.

It reads the suspect, the candidate bases the parent fetched (a JSON list of bot.anchors.selection.LocalBase),
chooses the anchor by the weights, scans, and writes the record; its exit code is the verdict's, or an
error's plus CHILD_FAILURE_OFFSET. Started with `--serve` it stays resident and takes one scan after another
(isolation.ResidentScanner), keeping its imports and the last bases it loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import OrderedDict
from pathlib import Path

from bot.errors import CHILD_FAILURE_OFFSET, EXIT_ERROR, ClipAuditError


def read_anchors(path: Path | None) -> tuple[list, list[str]]:
    """(the fetched candidate bases, every registry id) from the file isolation.py wrote."""
    from bot.anchors.selection import LocalBase

    if path is None:
        return [], []
    data = json.loads(path.read_text())
    bases = [LocalBase(**{**item, "path": Path(item["path"])}) for item in data["candidates"]]
    return bases, list(data["registered"])


def _parser() -> argparse.ArgumentParser:
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
    return p


class AnchorCache:
    """The last few bases loaded, kept between the scans of one resident child: a worker scanning fine-tunes
    of one base loads it once. Keyed by path (snapshots are stored by commit sha, so a path's content does
    not change under it), subfolder and commit; the device and size cap are the child's own, fixed for its life."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._loaded: OrderedDict[tuple, object] = OrderedDict()

    def __call__(self, base, load):
        key = (str(Path(base.path).resolve()), base.subfolder, base.sha)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        encoder = load(base)
        self._loaded[key] = encoder
        while len(self._loaded) > self.size:
            self._loaded.popitem(last=False)
        return encoder


def run(argv: list[str], *, anchor_cache: AnchorCache | None = None) -> int:
    """One scan, as the command line `argv` asks; returns the exit code (the verdict's, or an error's plus
    CHILD_FAILURE_OFFSET)."""
    args = _parser().parse_args(argv)
    from bot.detect.amdet import DetectorConfig
    from bot.fileio import atomic_write_text
    from bot.scanning.local import scan_path

    try:
        fetched, registered = read_anchors(args.anchors)  # the parent chose them by the header fingerprint
        record = scan_path(args.path, candidates=lambda _: fetched, registered=registered, device=args.device,
                           config=DetectorConfig(show_progress=False), model_name=args.model_name,
                           revision=args.revision, subfolder=args.subfolder, max_bytes=args.max_bytes,
                           anchor_cache=anchor_cache)
    except ClipAuditError as exc:
        print(f"scan failed: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code + CHILD_FAILURE_OFFSET  # never read as a verdict: the parent reports the failure
    atomic_write_text(args.json, record.to_json())
    return record.verdict.exit_code


def serve() -> int:
    """The resident child (isolation.ResidentScanner): one JSON request per stdin line, {"argv": [...]} as
    for a one-shot child; one JSON reply per stdout line, {"exit": code}. Ends at EOF (the parent went away)
    or after an unexpected error, whose state it does not trust; the parent starts a fresh one."""
    import traceback

    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever else prints (a library's warning) goes to stderr, never into the replies
    cache = AnchorCache()
    for line in sys.stdin:
        try:
            code = run(list(json.loads(line)["argv"]), anchor_cache=cache)
        except Exception:  # noqa: BLE001 - reported to the parent, then this process ends
            traceback.print_exc(file=sys.stderr)
            replies.write(json.dumps({"exit": EXIT_ERROR + CHILD_FAILURE_OFFSET, "fatal": True}) + "\n")
            replies.flush()
            return 1
        replies.write(json.dumps({"exit": code}) + "\n")
        replies.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--serve"]:
        return serve()
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
