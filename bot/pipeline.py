"""The job handler: plan, fetch (pinned to the sha), scan in a token-free subprocess, record, publish.

`scan_commit` is the scan part alone, the one way a Hub commit is scanned: the worker's and `clip-audit scan
owner/name[@revision]`'s."""

from __future__ import annotations

import dataclasses
import logging

from bot.anchors.registry import Registry, load_registry
from bot.anchors.remote import fetch_candidates
from bot.hub.client import HubClient
from bot.hub.families import plan_scan
from bot.hub.fetch import evict, fetch_snapshot
from bot.publish.poster import Publisher
from bot.scan_record import ScanRecord
from bot.scanning.isolation import OneShotScanner, ResidentScanner
from bot.settings import Settings
from bot.state.store import Job, Store

logger = logging.getLogger(__name__)


class JobHandler:
    """What the worker runs for each job."""

    def __init__(self, *, store: Store, api: HubClient, settings: Settings, publisher: Publisher) -> None:
        self.registry = load_registry(settings.anchors_file)
        self.store = store
        self.api = api
        self.settings = settings
        self.publisher = publisher
        self.scanner = ResidentScanner(settings) if settings.resident_scanner else OneShotScanner(settings)

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

    def close(self) -> None:
        """Ends the resident scanning child, if one is running."""
        self.scanner.close()

    def _scan(self, job: Job) -> ScanRecord:
        return scan_commit(self.api, job.repo_id, job.sha, settings=self.settings, registry=self.registry,
                           store=self.store, scanner=self.scanner)


def scan_commit(api: HubClient, repo_id: str, sha: str, *, settings: Settings, registry: Registry, store: Store,
                scanner: OneShotScanner | ResidentScanner, public_only: bool = True) -> ScanRecord:
    """Plans, downloads (pinned to `sha`) and scans one commit of a Hub repo; the weights are parsed by
    `scanner`'s token-free child, never in this process. `store` keeps the registered bases' first-use pins;
    `public_only` refuses private and gated repos (the bot's rule: plan_scan).

    Raises:
        SkipRepo: the commit cannot or must not be scanned (its reason says why).
        HubError, ScanFailed and their kinds: the download or the scan failed.
    """
    s = settings
    plan = plan_scan(api, repo_id, sha=sha, max_bytes=s.max_download_bytes, public_only=public_only)
    snapshot = fetch_snapshot(api, repo_id, sha, plan.files, cache_dir=s.cache_dir, max_bytes=s.max_download_bytes)
    subfolder = plan.text_encoders[0] if plan.text_encoders and plan.text_encoders[0] else None
    # The anchor comes from the registry, chosen by the weights; the card is never asked (bot/anchors/).
    bases, problems = fetch_candidates(plan.fingerprint, registry=registry, client=api, store=store, settings=s)
    record = scanner.scan(snapshot, subfolder=subfolder, candidates=bases, registered=registry.ids,
                          model_name=repo_id, revision=sha)
    # Snapshots are kept by commit sha: the suspect's, and its candidate bases' (the next fine-tune needs them).
    evict(s.cache_dir, s.cache_max_bytes, keep=(sha, *(base.sha for base in bases if base.sha)))
    return dataclasses.replace(record, notes=[*record.notes, *problems]) if problems else record
