"""The job handler: plan, fetch (pinned to the sha), scan in a token-free subprocess, record, publish.

Untrusted weights are parsed in a child process whose environment holds no Hub
token: if a malicious checkpoint ever found a parser bug, it would find no
credentials to steal. The parent, which holds the token, only reads the JSON
record the child wrote.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bot.detect.record import ScanRecord
from bot.errors import (
    EXIT_BACKDOOR, EXIT_CLEAN, EXIT_ERROR, EXIT_NOTHING_SCANNABLE, ClipAuditError, NothingScannableError, SkipRepo,
)
from bot.hub.families import plan_scan
from bot.hub.fetch import evict, fetch_snapshot
from bot.settings import Settings
from bot.state.store import Job, Store

logger = logging.getLogger(__name__)

_SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CLIP_AUDIT_TOKEN", "CLIP_AUDIT_WEBHOOK_SECRET")


class ScanFailed(ClipAuditError):
    """The scanning subprocess failed on this checkpoint."""


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
        cmd = [sys.executable, "-m", "bot.scan_child", str(snapshot), "--json", str(out), "--device", settings.device,
               "--cache-dir", str(anchor_cache),
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
            if proc.returncode == 10 + EXIT_NOTHING_SCANNABLE:
                raise NothingScannableError(message)  # the same commit will never become scannable
            raise ScanFailed(message)
        return ScanRecord.from_json(out.read_text())


class JobHandler:
    """What the worker runs for each job."""

    def __init__(self, *, store: Store, api, settings: Settings, publisher, anchor_cache: Path = Path("cache")) -> None:
        """anchor_cache: where locally held clean bases live (the zoo's cache/zoo), used when a card
        names no base we can fetch."""
        self.anchor_cache = anchor_cache
        self.store = store
        self.api = api
        self.settings = settings
        self.publisher = publisher

    def __call__(self, job: Job) -> None:
        existing = self.store.get_scan(job.repo_id, job.sha)
        if existing is not None:
            record = ScanRecord.from_json(existing.record_json)
        else:
            record = self._scan(job)
            self.store.record_scan(repo_id=job.repo_id, sha=job.sha, record_json=record.to_json(),
                                   verdict=record.verdict.value)
        outcome = self.publisher.publish(record, repo_id=job.repo_id, sha=job.sha,
                                         requested=job.requested_by is not None, discussion_num=job.discussion_num)
        logger.info("%s@%s: %s -> %s", job.repo_id, job.sha[:12], record.verdict.value, outcome.action)

    def _scan(self, job: Job) -> ScanRecord:
        s = self.settings
        plan = plan_scan(self.api, job.repo_id, sha=job.sha, max_bytes=s.max_download_bytes)
        snapshot = fetch_snapshot(self.api, job.repo_id, job.sha, plan.files, cache_dir=s.cache_dir,
                                  max_bytes=s.max_download_bytes, token=s.token)
        subfolder = plan.text_encoders[0] if plan.text_encoders and plan.text_encoders[0] else None
        anchor = self._fetch_anchor(snapshot)
        record = scan_in_subprocess(snapshot, subfolder=subfolder, anchor_path=anchor[1] if anchor else None,
                                    model_name=job.repo_id, revision=job.sha, settings=s,
                                    anchor_cache=self.anchor_cache, extra_anchor=anchor)
        evict(s.cache_dir, s.cache_max_bytes, keep=(snapshot,))
        return record

    def _fetch_anchor(self, snapshot: Path) -> tuple[str, Path] | None:
        """The card's base_model, downloaded from the Hub pinned to its current sha, when it is
        a CLIP-family repo we can scan; otherwise the scanner falls back to local anchors."""
        from bot.encoders.layout import inspect_checkpoint

        try:
            base = inspect_checkpoint(snapshot).base_model
        except ClipAuditError:
            return None  # the scanner itself will report what is wrong with the checkpoint
        if not base or "/" not in base:
            return None
        try:
            plan = plan_scan(self.api, base, max_bytes=self.settings.max_download_bytes)
            path = fetch_snapshot(self.api, base, plan.sha, plan.files, cache_dir=self.settings.cache_dir,
                                  max_bytes=self.settings.max_download_bytes, token=self.settings.token)
        except SkipRepo as skip:
            logger.info("base model %s cannot serve as anchor: %s", base, skip.reason)
            return None
        except ClipAuditError as error:
            logger.warning("base model %s could not be fetched: %s", base, error)
            return None
        return (f"{base}@{plan.sha[:12]}", path)
