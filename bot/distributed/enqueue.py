"""Handing queued jobs to the Celery broker (queue_backend "celery").

A job is queued in the state database first (Store.enqueue: its (repo_id, sha) is unique there), then its task
is sent here. If the broker cannot be reached the job stays queued in the store, and `watch` sends it again
(`resubmit`): when it starts, and for jobs left waiting past the broker's visibility timeout (the broker
restarted and lost them). Sending a job twice is harmless: a delivery runs a job only if it can lease it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError

from bot.settings import Settings
from bot.state import Job, JobStatus, Store

from .app import SCAN_QUEUE, SCAN_TASK, celery_app

logger = logging.getLogger(__name__)

# What sending can raise when the broker is down or refuses us (kombu wraps most of them as OperationalError).
_SEND_ERRORS = (OperationalError, KombuError, RedisError, OSError)


class CeleryQueue:
    """Sends scan tasks, named by (repo_id, sha), to the broker at settings.redis_url."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.app = celery_app(settings)
        self.clock = clock

    def __repr__(self) -> str:
        return "CeleryQueue()"  # the broker URL may hold a password

    def submit(self, job: Job) -> bool:
        """Sends the task for `job` (due at its next_run_at); False when the broker could not take it (logged:
        the job stays queued in the store for `resubmit`)."""
        delay = max(0.0, job.next_run_at - self.clock())
        try:
            self.app.send_task(SCAN_TASK, args=[job.repo_id, job.sha], queue=SCAN_QUEUE,
                               countdown=delay or None)  # fmt: skip
        except _SEND_ERRORS as exc:
            logger.error("job %d (%s@%s) stays queued in the store: the broker did not take it (%s: %s)",
                         job.id, job.repo_id, job.sha[:8], type(exc).__name__, exc)  # fmt: skip
            return False
        logger.info("job %d (%s@%s) sent to the broker", job.id, job.repo_id, job.sha[:8])
        return True

    def resubmit(self, store: Store, *, waiting_longer_than: float | None) -> int:
        """Sends again the jobs queued in the store: those due for more than `waiting_longer_than` seconds, or
        (None) all of them, each due at its next_run_at. A due one is counted as due from now, so that the next
        pass does not send it again before another such wait. Returns how many the broker took."""
        now = self.clock()
        sent = 0
        for job in store.jobs(JobStatus.QUEUED):
            if waiting_longer_than is not None and job.next_run_at > now - waiting_longer_than:
                continue
            if self.submit(job):
                sent += 1
                if job.next_run_at <= now:
                    store.mark_due(job.id, now=now)
        if sent:
            logger.info("sent %d job(s) waiting in the store to the broker again", sent)
        return sent
