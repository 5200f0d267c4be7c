"""Scanning untrusted weights in a child process whose environment holds no Hub token.

If a malicious checkpoint ever found a parser bug, it would find no credentials to steal. The parent, which
holds the token, only reads the JSON record the child wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

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


# A resident child is replaced after this many scans: it parses untrusted weights one after another, so its
# life (what a parser bug could leave behind for the next scan, and memory the allocator never returns) is bounded.
RESIDENT_SCANS_MAX = 50


@contextlib.contextmanager
def _scan_request(snapshot: Path, *, subfolder: str | None, candidates: Sequence[LocalBase],
                  registered: Sequence[str], model_name: str, revision: str, settings: Settings):
    """A scratch folder holding the candidate bases for the child -> (where the child writes its record,
    the child's arguments); removed on exit."""
    with tempfile.TemporaryDirectory(prefix="clip-audit-scan-") as tmp:
        out, anchors = Path(tmp) / "record.json", Path(tmp) / "anchors.json"
        fetched = [{**dataclasses.asdict(c), "path": str(c.path)} for c in candidates]
        anchors.write_text(json.dumps({"candidates": fetched, "registered": list(registered)}))
        argv = [str(snapshot), "--json", str(out), "--device", settings.device, "--anchors", str(anchors),
                "--model-name", model_name, "--revision", revision, "--max-bytes", str(settings.max_download_bytes)]
        yield out, [*argv, "--subfolder", subfolder] if subfolder else argv


def _record_or_raise(code: int, out: Path, stderr_tail: str, *, model_name: str, revision: str) -> ScanRecord:
    if code not in (EXIT_CLEAN, EXIT_BACKDOOR, EXIT_ERROR) or not out.is_file():
        message = f"scan of {model_name}@{revision[:12]} failed (exit {code}): {stderr_tail}"
        if code == CHILD_FAILURE_OFFSET + EXIT_NOTHING_SCANNABLE:
            raise NothingScannableError(message)  # the same commit will never become scannable
        raise ScanFailed(message)
    return ScanRecord.from_json(out.read_text())


def _tail(text: str) -> str:
    return " | ".join(text.strip().splitlines()[-3:])


class OneShotScanner:
    """A fresh token-free child per scan (ResidentScanner's interface; `Settings.resident_scanner` False)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def scan(self, snapshot: Path, *, subfolder: str | None, candidates: Sequence[LocalBase],
             registered: Sequence[str], model_name: str, revision: str) -> ScanRecord:
        """Scans `snapshot` in a fresh child; `candidates` are the registered bases fetched for it,
        `registered` every registry id."""
        with _scan_request(snapshot, subfolder=subfolder, candidates=candidates, registered=registered,
                           model_name=model_name, revision=revision, settings=self.settings) as (out, argv):
            proc = subprocess.run([sys.executable, "-m", child.__name__, *argv], env=child_environment(os.environ),
                                  capture_output=True, text=True, check=False)
            return _record_or_raise(proc.returncode, out, _tail(proc.stderr or ""), model_name=model_name,
                                    revision=revision)

    def close(self) -> None:
        """Nothing to end: each child ends with its scan."""


class ResidentScanner:
    """One token-free scanning child kept between jobs (the worker's): torch and transformers are imported
    once, and the bases scanned against stay loaded, so the next fine-tune of the same base starts at once.

    The child holds no token, like a one-shot child; it is replaced after RESIDENT_SCANS_MAX scans, after any
    failure it reports as unexpected, and whenever a scan is interrupted (its state is then unknown).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self._scans = 0

    def scan(self, snapshot: Path, *, subfolder: str | None, candidates: Sequence[LocalBase],
             registered: Sequence[str], model_name: str, revision: str) -> ScanRecord:
        proc = self._started()
        with _scan_request(snapshot, subfolder=subfolder, candidates=candidates, registered=registered,
                           model_name=model_name, revision=revision, settings=self.settings) as (out, argv):
            try:
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(json.dumps({"argv": argv}) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except BaseException:  # interrupted (a cold shutdown) or the pipe broke: the child's state is unknown
                self.close()
                raise
            try:
                reply = json.loads(line)
            except ValueError:  # no reply (the child died) or a torn one: either way it is not trusted again
                reply = {"exit": proc.poll(), "fatal": True}
            if not isinstance(reply, dict):
                reply = {"exit": None, "fatal": True}
            code = reply.get("exit")
            tail = self._stderr_tail()
            self._scans += 1
            if reply.get("fatal") or self._scans >= RESIDENT_SCANS_MAX:
                self.close()
            return _record_or_raise(code if isinstance(code, int) else -1, out, tail, model_name=model_name,
                                    revision=revision)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # EOF: an idle child ends by itself
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._scans = 0

    def _started(self) -> subprocess.Popen[str]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self.close()
        # stderr goes to a file, not a pipe: nobody drains a pipe between scans, and a full one would block the child
        self._stderr = tempfile.TemporaryFile(mode="w+", prefix="clip-audit-scanner-")  # noqa: SIM115 - closed in close()
        self._proc = subprocess.Popen([sys.executable, "-m", child.__name__, "--serve"],
                                      env=child_environment(os.environ), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        return self._proc

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read()[-4000:]
        self._stderr.seek(0)
        self._stderr.truncate()
        return _tail(text)
