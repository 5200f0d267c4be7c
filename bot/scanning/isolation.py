"""Scanning untrusted weights in a child process whose environment holds no Hub token.

If a malicious checkpoint ever found a parser bug, it would find no credentials to steal. The parent, which
holds the token, only reads the JSON record the child wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bot.errors import (
    CHILD_FAILURE_OFFSET, EXIT_BACKDOOR, EXIT_CLEAN, EXIT_ERROR, EXIT_NOTHING_SCANNABLE, NothingScannableError,
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


def scan_in_subprocess(snapshot: Path, *, subfolder: str | None, anchor_path: Path | None, model_name: str,
                       revision: str, settings: Settings, anchor_cache: Path,
                       extra_anchor: tuple[str, Path] | None = None) -> ScanRecord:
    env = child_environment(os.environ)
    with tempfile.TemporaryDirectory(prefix="clip-audit-scan-") as tmp:
        out = Path(tmp) / "record.json"
        cmd = [sys.executable, "-m", child.__name__, str(snapshot), "--json", str(out), "--device", settings.device,
               "--anchor-cache", str(anchor_cache),
               "--model-name", model_name, "--revision", revision]
        if subfolder:
            cmd += ["--subfolder", subfolder]
        if anchor_path is not None:
            cmd += ["--anchor", str(anchor_path)]
        if extra_anchor is not None:
            cmd += ["--anchor-name", extra_anchor[0]]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode not in (EXIT_CLEAN, EXIT_BACKDOOR, EXIT_ERROR) or not out.is_file():
            tail = " | ".join((proc.stderr or "").strip().splitlines()[-3:])
            message = f"scan of {model_name}@{revision[:12]} failed (exit {proc.returncode}): {tail}"
            if proc.returncode == CHILD_FAILURE_OFFSET + EXIT_NOTHING_SCANNABLE:
                raise NothingScannableError(message)  # the same commit will never become scannable
            raise ScanFailed(message)
        return ScanRecord.from_json(out.read_text())
