"""The demo's Hub: the emulator run as its own process, seeded over its admin HTTP API.

The bot never imports the emulator: to the bot it is a Hub at a URL, reached through the real huggingface_hub
client. Only the demo and the load benchmark (benchmarks/load.py), playing the uploaders' and the network's part,
use the emulator's admin routes: to create repos with a chosen creation date, open discussions and comment as any
user, inject faults and read what became of each webhook delivery. Every admin call carries the admin token
(the emulator refuses admin calls without it); this class chooses it and hands it to the emulator's process.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bot.errors import ClipAuditError

ADMIN_HEADER = "X-Emulator-Admin-Token"
START_TIMEOUT_S = 30.0
# The emulator is on loopback: a proxy from the environment must never see the admin token.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DemoHub:
    """`python -m hub_emulator` on a loopback port, stopped by stop() (or `with`)."""

    def __init__(self, *, data_dir: Path, port: int, tokens: dict[str, str], webhook_url: str,
                 webhook_secret: str, options: tuple[str, ...] = ()) -> None:
        """`options`: more `hub-emulator` flags (e.g. "--webhook-backoff", "0.5")."""
        self.url = f"http://127.0.0.1:{port}"
        self._admin = secrets.token_hex(16)
        env = {**os.environ, "HUB_EMULATOR_TOKENS": ",".join(f"{t}={u}" for t, u in tokens.items()),
               "HUB_EMULATOR_WEBHOOK_SECRET": webhook_secret, "HUB_EMULATOR_ADMIN_TOKEN": self._admin}
        self._log = open(Path(data_dir).parent / "hub-emulator.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "hub_emulator", "--data-dir", str(data_dir), "--port", str(port),
             "--webhook-url", webhook_url, *options], env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ClipAuditError(f"the Hub emulator exited at start (code {self._process.returncode}); "
                                     f"see {self._log.name}")
            try:
                self._admin_call("GET", "/_emulator/health")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        self.stop()
        raise ClipAuditError(f"the Hub emulator did not answer within {START_TIMEOUT_S:.0f}s; see {self._log.name}")

    def _admin_call(self, method: str, path: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={ADMIN_HEADER: self._admin, "Content-Type": "application/json"})
        with _LOCAL.open(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")

    def create_repo(self, repo_id: str, *, files: dict[str, Path | bytes], tags: list[str],
                    pipeline_tag: str | None, library_name: str, created_at: str | None = None) -> str:
        """Creates `repo_id` holding `files` (repo path -> local file or content); returns its commit sha.
        created_at None: now."""
        encoded = {}
        for name, source in files.items():
            content = source if isinstance(source, bytes) else Path(source).read_bytes()
            encoded[name] = {"base64": base64.b64encode(content).decode("ascii")}
        spec = {"repo_id": repo_id, "files": encoded, "tags": tags, "library_name": library_name}
        if created_at is not None:
            spec["created_at"] = created_at
        if pipeline_tag is not None:
            spec["pipeline_tag"] = pipeline_tag
        return self._admin_call("POST", "/_emulator/repos", spec)["sha"]

    def open_discussion(self, repo_id: str, *, author: str, title: str, description: str = "") -> int:
        """Opens a discussion as `author` (its opening post is `description`); returns its number."""
        payload = {"author": author, "title": title, "description": description}
        return self._admin_call("POST", f"/_emulator/repos/{repo_id}/discussions", payload)["num"]

    def comment(self, repo_id: str, num: int, *, author: str, text: str) -> dict:
        """Comments as `author`; returns the comment as the Hub shows it (id, createdAt, ...)."""
        payload = {"author": author, "text": text}
        return self._admin_call("POST", f"/_emulator/repos/{repo_id}/discussions/{num}/comments", payload)["event"]

    def add_fault(self, spec: dict) -> int:
        """Arms a fault (hub_emulator/faults.py: kind, path_prefix, method, count, burst, gap, ...); its id."""
        return self._admin_call("POST", "/_emulator/faults", spec)["id"]

    def faults(self) -> dict:
        """{"active": [...], "spent": [...]}: each fault with how many requests it acted on ("fired")."""
        return self._admin_call("GET", "/_emulator/faults")

    def clear_faults(self) -> None:
        self._admin_call("DELETE", "/_emulator/faults")

    def webhook_deliveries(self, *, flush: bool = False) -> dict:
        """{"counts": {outcome: n}, "deliveries": [{id, scope, comment_id, outcome, attempts, ...}]}; flush waits
        (bounded) for the deliveries still pending."""
        return self._admin_call("GET", "/_emulator/webhook-deliveries" + ("?flush=1" if flush else ""))

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()

    def __enter__(self) -> DemoHub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
