"""The job handler: plan, fetch (pinned to the sha), scan in a token-free subprocess, record, publish."""

from __future__ import annotations

import logging
from pathlib import Path

from bot.scan_record import ScanRecord
from bot.errors import ClipAuditError, SkipRepo
from bot.hub.families import plan_scan
from bot.hub.client import HubClient
from bot.hub.fetch import evict, fetch_snapshot
from bot.publish.poster import Publisher
from bot.scanning.isolation import scan_in_subprocess
from bot.settings import Settings
from bot.state.store import Job, Store

logger = logging.getLogger(__name__)

class JobHandler:
    """What the worker runs for each job."""

    def __init__(self, *, store: Store, api: HubClient, settings: Settings, publisher: Publisher) -> None:
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
        logger.info("%s@%s: %s -> %s", job.repo_id, job.sha[:12], record.verdict.value, outcome.action.value)

    def _scan(self, job: Job) -> ScanRecord:
        s = self.settings
        plan = plan_scan(self.api, job.repo_id, sha=job.sha, max_bytes=s.max_download_bytes)
        snapshot = fetch_snapshot(self.api, job.repo_id, job.sha, plan.files, cache_dir=s.cache_dir,
                                  max_bytes=s.max_download_bytes)
        subfolder = plan.text_encoders[0] if plan.text_encoders and plan.text_encoders[0] else None
        anchor = self._fetch_anchor(snapshot)
        record = scan_in_subprocess(snapshot, subfolder=subfolder, anchor_path=anchor[1] if anchor else None,
                                    model_name=job.repo_id, revision=job.sha, settings=s,
                                    anchor_cache=s.anchor_cache, extra_anchor=anchor)
        # Snapshots are kept by commit sha: the suspect's, and the anchor's (the next fine-tune of it needs it).
        evict(s.cache_dir, s.cache_max_bytes, keep=(job.sha, *([anchor[1].name] if anchor else [])))
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
                                  max_bytes=self.settings.max_download_bytes)
        except SkipRepo as skip:
            logger.info("base model %s cannot serve as anchor: %s", base, skip.reason)
            return None
        except ClipAuditError as error:
            logger.warning("base model %s could not be fetched: %s", base, error)
            return None
        return (f"{base}@{plan.sha[:12]}", path)
