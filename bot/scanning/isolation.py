"""Scanning untrusted weights in a child process whose environment holds no Hub token.

If a malicious checkpoint ever found a parser bug, it would find no credentials to steal. The parent, which
holds the token, only reads the JSON record the child wrote.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bot.anchors.selection import LocalBase
from bot.errors import (
    CHILD_FAILURE_OFFSET,
    EXIT_BACKDOOR,
    EXIT_CLEAN,
    EXIT_ERROR,
    EXIT_NOTHING_SCANNABLE,
    NothingScannableError,
    ScanFailed,
)
from bot.scan_record import ScanRecord
from bot.scanning import child
from bot.settings import Settings

_SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CLIP_AUDIT_TOKEN", "CLIP_AUDIT_WEBHOOK_SECRET")


def child_environment(environ: dict[str, str] | os._Environ) -> dict[str, str]:
    """The scanning child's environment: no Hub token or webhook secret, and no Hub access."""
    env = {k: v for k, v in environ.items() if k not in _SECRET_ENV and "TOKEN" not in k.upper()}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def scan_in_subprocess(snapshot: Path, *, subfolder: str | None, candidates: Sequence[LocalBase],
                       registered: Sequence[str], model_name: str, revision: str, settings: Settings) -> ScanRecord:
    """Scans `snapshot` in the token-free child; `candidates` are the registered bases fetched for it,
    `registered` every registry id."""
    env = child_environment(os.environ)
    with tempfile.TemporaryDirectory(prefix="clip-audit-scan-") as tmp:
        out = Path(tmp) / "record.json"
        anchors = Path(tmp) / "anchors.json"
        fetched = [{**dataclasses.asdict(c), "path": str(c.path)} for c in candidates]
        anchors.write_text(json.dumps({"candidates": fetched, "registered": list(registered)}))
        cmd = [sys.executable, "-m", child.__name__, str(snapshot), "--json", str(out), "--device", settings.device,
               "--anchors", str(anchors), "--model-name", model_name, "--revision", revision,
               "--max-bytes", str(settings.max_download_bytes)]
        if subfolder:
            cmd += ["--subfolder", subfolder]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode not in (EXIT_CLEAN, EXIT_BACKDOOR, EXIT_ERROR) or not out.is_file():
            tail = " | ".join((proc.stderr or "").strip().splitlines()[-3:])
            message = f"scan of {model_name}@{revision[:12]} failed (exit {proc.returncode}): {tail}"
            if proc.returncode == CHILD_FAILURE_OFFSET + EXIT_NOTHING_SCANNABLE:
                raise NothingScannableError(message)  # the same commit will never become scannable
            raise ScanFailed(message)
        return ScanRecord.from_json(out.read_text())
