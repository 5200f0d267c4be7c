"""The demo's Hub: the emulator run as its own process, seeded over its admin HTTP API.

The bot never imports the emulator: to the bot it is a Hub at a URL, reached through the real huggingface_hub
client. Only the demo, playing the uploaders' part, uses the emulator's admin routes to create repos with a
chosen creation date.
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


class DemoHub:
    """`python -m hub_emulator` on a loopback port, stopped by stop() (or `with`)."""

    def __init__(self, *, data_dir: Path, port: int, tokens: dict[str, str], webhook_url: str,
                 webhook_secret: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._admin = secrets.token_hex(16)
        env = {**os.environ, "HUB_EMULATOR_TOKENS": ",".join(f"{t}={u}" for t, u in tokens.items()),
               "HUB_EMULATOR_WEBHOOK_SECRET": webhook_secret, "HUB_EMULATOR_ADMIN_TOKEN": self._admin}
        self._log = open(Path(data_dir).parent / "hub-emulator.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "hub_emulator", "--data-dir", str(data_dir), "--port", str(port),
             "--webhook-url", webhook_url], env=env, stdout=self._log, stderr=subprocess.STDOUT)
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
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")

    def create_repo(self, repo_id: str, *, files: dict[str, Path | bytes], tags: list[str],
                    pipeline_tag: str | None, library_name: str, created_at: str) -> str:
        """Creates `repo_id` holding `files` (repo path -> local file or content); returns its commit sha."""
        encoded = {}
        for name, source in files.items():
            content = source if isinstance(source, bytes) else Path(source).read_bytes()
            encoded[name] = {"base64": base64.b64encode(content).decode("ascii")}
        spec = {"repo_id": repo_id, "files": encoded, "tags": tags, "library_name": library_name,
                "created_at": created_at}
        if pipeline_tag is not None:
            spec["pipeline_tag"] = pipeline_tag
        return self._admin_call("POST", "/_emulator/repos", spec)["sha"]

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
