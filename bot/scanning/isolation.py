"""Scanning untrusted weights in a child process that holds no Hub token, cannot reach the network, and runs
under a wall-clock and (on the CPU) a memory limit.

If a malicious checkpoint ever found a parser bug, it would find no credentials to steal and no way to send
anything out. The parent, which holds the token, only reads the JSON record the child wrote. A checkpoint that
hangs the parser or makes it allocate without end costs one failed attempt (ScanTimeoutError,
ScanOutOfMemoryError), never the worker.

What is enforced, and what is not:
- no token: the child's environment holds none (child_environment) and the parent passes none;
- no network: Python-level connections and name lookups fail inside the child (child.forbid_network, an audit
  hook); HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE keep the libraries from trying, and every proxy variable points
  at a closed loopback port. Native code opening sockets on its own is not stopped (no network namespace:
  that needs privileges the worker does not have; run the worker in a container without a network for that);
- time: the parent kills the child's whole process group after Settings.scan_timeout_seconds of one scan (a
  resident child's start-up is bounded apart, by CHILD_START_SECONDS);
- memory: RLIMIT_AS of Settings.scan_memory_bytes on the CPU (child.limit_memory); on CUDA none (the driver's
  address-space reservations would not fit one), and memory the kernel takes back by killing the child
  (SIGKILL) is reported as out of memory too.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from bot.anchors.selection import LocalBase
from bot.errors import (
    CHILD_FAILURE_OFFSET,
    CHILD_OUT_OF_MEMORY,
    EXIT_BACKDOOR,
    EXIT_CLEAN,
    EXIT_ERROR,
    EXIT_NOTHING_SCANNABLE,
    NothingScannableError,
    ScanFailed,
    ScanOutOfMemoryError,
    ScanTimeoutError,
)
from bot.scan_record import ScanRecord
from bot.scanning import child
from bot.settings import Settings

# The broker URL may carry a password, and the child has no business with the queue.
_SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CLIP_AUDIT_TOKEN", "CLIP_AUDIT_WEBHOOK_SECRET",
               "CLIP_AUDIT_REDIS_URL")
_PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")  # matched case-insensitively
# Where the child's proxies point: the discard port on loopback, where nothing listens, so a library that
# honours a proxy fails at once instead of reaching the network.
DEAD_PROXY = "http://127.0.0.1:9"
_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                **{name: DEAD_PROXY for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                                 "http_proxy", "https_proxy", "all_proxy")}}  # fmt: skip
# How long a resident child may take to start (Python, torch and transformers imported) before it is given
# up as broken; generous, because the machine may be busy with a scan in another worker.
CHILD_START_SECONDS = 300.0


def child_environment(environ: dict[str, str] | os._Environ) -> dict[str, str]:
    """The scanning child's environment: no Hub token or webhook secret, and no Hub or network access."""
    env = {k: v for k, v in environ.items()
           if k not in _SECRET_ENV and "TOKEN" not in k.upper() and k.lower() not in _PROXY_ENV}  # fmt: skip
    env.update(_OFFLINE_ENV)
    return env


def child_command() -> list[str]:
    """How the scanning child is started: this interpreter running bot.scanning.child."""
    return [sys.executable, "-m", child.__name__]


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
        fetched = [c.to_dict() for c in candidates]
        anchors.write_text(json.dumps({"candidates": fetched, "registered": list(registered)}))
        argv = [str(snapshot), "--json", str(out), "--device", settings.device, "--anchors", str(anchors),
                "--model-name", model_name, "--revision", revision, "--max-bytes", str(settings.max_download_bytes)]
        yield out, [*argv, "--subfolder", subfolder] if subfolder else argv


def _record_or_raise(code: int, out: Path, stderr_tail: str, *, model_name: str, revision: str,
                     settings: Settings) -> ScanRecord:
    if code not in (EXIT_CLEAN, EXIT_BACKDOOR, EXIT_ERROR) or not out.is_file():
        what = f"scan of {model_name}@{revision[:12]}"
        if code == CHILD_OUT_OF_MEMORY:
            raise ScanOutOfMemoryError(f"{what} ran out of memory (the scanning child may use "
                                       f"{settings.scan_memory_bytes} bytes, scan_memory_bytes): {stderr_tail}")
        if code == -signal.SIGKILL:  # not by us (a timeout is reported before this): the kernel reclaiming memory
            raise ScanOutOfMemoryError(f"{what} failed: the scanning child was killed (SIGKILL), most likely by "
                                       f"the kernel's out-of-memory killer: {stderr_tail}")
        message = f"{what} failed (exit {code}): {stderr_tail}"
        if code == CHILD_FAILURE_OFFSET + EXIT_NOTHING_SCANNABLE:
            raise NothingScannableError(message)  # the same commit will never become scannable
        raise ScanFailed(message)
    return ScanRecord.from_json(out.read_text())


def _timed_out(settings: Settings, *, model_name: str, revision: str) -> ScanTimeoutError:
    return ScanTimeoutError(f"scan of {model_name}@{revision[:12]} timed out after {settings.scan_timeout_seconds:g} s "
                            "(scan_timeout_seconds); the scanning child was killed")


def _kill_group(proc: subprocess.Popen) -> None:
    """Kills the child and everything it started (it leads its own process group), then reaps it.

    Only while the child is not yet reaped: until then its pid, and so its group id, cannot be reused by a
    process this worker did not start."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(text: str) -> str:
    return " | ".join(text.strip().splitlines()[-3:])


class OneShotScanner:
    """A fresh token-free child per scan (ResidentScanner's interface; `Settings.resident_scanner` False).
    Its wall-clock limit covers the whole child, start-up included."""

    def __init__(self, settings: Settings, *, command: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.command = list(command) if command is not None else child_command()

    def scan(self, snapshot: Path, *, subfolder: str | None, candidates: Sequence[LocalBase],
             registered: Sequence[str], model_name: str, revision: str) -> ScanRecord:
        """Scans `snapshot` in a fresh child; `candidates` are the registered bases fetched for it,
        `registered` every registry id.

        Raises:
            ScanTimeoutError, ScanOutOfMemoryError, ScanFailed, NothingScannableError: the scan did not end
                with a record.
        """
        s = self.settings
        with _scan_request(snapshot, subfolder=subfolder, candidates=candidates, registered=registered,
                           model_name=model_name, revision=revision, settings=s) as (out, argv):
            # A session of its own, so that the child and anything it starts can be killed as one group.
            proc = subprocess.Popen([*self.command, *argv, "--memory-limit", str(s.scan_memory_bytes)],
                                    env=child_environment(os.environ), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)  # fmt: skip
            try:
                _, stderr = proc.communicate(timeout=s.scan_timeout_seconds)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.communicate()
                raise _timed_out(s, model_name=model_name, revision=revision) from None
            except BaseException:  # interrupted (a cold shutdown): the child must not outlive the attempt
                _kill_group(proc)
                raise
            return _record_or_raise(proc.returncode, out, _tail(stderr or ""), model_name=model_name,
                                    revision=revision, settings=s)

    def close(self) -> None:
        """Nothing to end: each child ends with its scan."""


class ResidentScanner:
    """One token-free scanning child kept between jobs (the worker's): torch and transformers are imported
    once, and the bases scanned against stay loaded, so the next fine-tune of the same base starts at once.

    The child holds no token, like a one-shot child; it is replaced after RESIDENT_SCANS_MAX scans, after any
    failure it reports as unexpected, after running out of memory or time, and whenever a scan is interrupted
    (its state is then unknown).
    """

    def __init__(self, settings: Settings, *, command: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.command = list(command) if command is not None else child_command()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[str] | None = None
        self._pending = bytearray()  # what the child wrote past the last line read
        self._scans = 0

    def scan(self, snapshot: Path, *, subfolder: str | None, candidates: Sequence[LocalBase],
             registered: Sequence[str], model_name: str, revision: str) -> ScanRecord:
        """As OneShotScanner.scan; the wall-clock limit covers the scan, not the child's start-up."""
        s = self.settings
        proc = self._started()
        with _scan_request(snapshot, subfolder=subfolder, candidates=candidates, registered=registered,
                           model_name=model_name, revision=revision, settings=s) as (out, argv):
            try:
                assert proc.stdin is not None
                proc.stdin.write((json.dumps({"argv": argv}) + "\n").encode())
                proc.stdin.flush()
                line = self._read_line(proc, deadline=time.monotonic() + s.scan_timeout_seconds)
            except BaseException:  # interrupted (a cold shutdown) or the pipe broke: the child's state is unknown
                self._kill()
                raise
            if line is None:
                self._kill()
                raise _timed_out(s, model_name=model_name, revision=revision)
            try:
                reply = json.loads(line)
            except ValueError:  # no reply (the child died) or a torn one: either way it is not trusted again
                reply = {"exit": self._ended(proc), "fatal": True}
            if not isinstance(reply, dict):
                reply = {"exit": None, "fatal": True}
            code = reply.get("exit")
            tail = self._stderr_tail()
            self._scans += 1
            if reply.get("fatal") or self._scans >= RESIDENT_SCANS_MAX:
                self._stop_child()
            return _record_or_raise(code if isinstance(code, int) else -1, out, tail, model_name=model_name,
                                    revision=revision, settings=s)

    def close(self) -> None:
        """Ends the child (see _stop_child) and drops its stderr file."""
        self._stop_child()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _stop_child(self) -> None:
        """EOF on the child's input (an idle child ends by itself); killed if it has not ended within 5 s."""
        proc = self._proc
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._kill()

    @staticmethod
    def _ended(proc: subprocess.Popen[bytes]) -> int:
        """The exit status of a child that stopped answering: it died (or closed its output: then it is killed)."""
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return EXIT_ERROR + CHILD_FAILURE_OFFSET

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _kill_group(proc)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self._pending.clear()
        self._scans = 0

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._kill()
        if self._stderr is None:
            # stderr goes to a file, not a pipe: nobody drains a pipe between scans, and a full one would block
            # the child. Kept across children, so that a child that died leaves its last words for the report.
            self._stderr = tempfile.TemporaryFile(mode="w+", prefix="clip-audit-scanner-")  # noqa: SIM115
        s = self.settings
        self._proc = subprocess.Popen([*self.command, "--serve", "--device", s.device,
                                       "--memory-limit", str(s.scan_memory_bytes)],
                                      env=child_environment(os.environ), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr,
                                      start_new_session=True)  # fmt: skip
        line = self._read_line(self._proc, deadline=time.monotonic() + CHILD_START_SECONDS)
        try:
            ready = line is not None and json.loads(line) == {"ready": True}
        except ValueError:
            ready = False
        if not ready:
            self._kill()
            raise ScanFailed(f"the scanning child did not start: {self._stderr_tail() or 'no output'}")
        return self._proc

    def _read_line(self, proc: subprocess.Popen[bytes], *, deadline: float) -> bytes | None:
        """The child's next line on stdout; b"" when it closed stdout (it died), None when `deadline` passed."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return b""
            self._pending += chunk
        line, _, rest = bytes(self._pending).partition(b"\n")
        self._pending[:] = rest
        return line

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read()[-4000:]
        self._stderr.seek(0)
        self._stderr.truncate()
        return _tail(text)
