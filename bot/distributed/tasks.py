"""What a Celery worker does with a scan task, and `clip-audit worker --backend celery`.

A task names a job by (repo_id, sha); the job itself is the row the coordinator queued in the state database.
Each delivery leases that row (Store.claim) before it runs anything, then runs the job exactly as the built-in
worker does (Worker.perform: the same handler, the same retries and skips, the scan in the token-free child)
and records the outcome there. So:
- a duplicate delivery of a job that is finished does nothing (the result write is a unique insert and the
  post is recorded once, but it never gets that far: the job is not takeable);
- a delivery of a job another worker holds comes back when that worker's lease ends (a live worker renews it,
  a dead one's runs out), and one of a job waiting for a retry comes back when it is due;
- a job the handler failed is queued again in the store and its task sent again with the backoff's countdown.

One worker process per GPU: `--concurrency 1` (the default) with CUDA_VISIBLE_DEVICES naming the GPU.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from celery import Celery
from celery.signals import worker_process_shutdown

from bot.errors import ClipAuditError
from bot.settings import Settings
from bot.state import Job, JobStatus, Store
from bot.worker import Handler, Heartbeat, Worker

from .app import SCAN_QUEUE, SCAN_TASK, celery_app

logger = logging.getLogger(__name__)

# A delivery that must come back later is sent again this much after the time it waits for (a lease's end, a
# retry's due time), so that it does not arrive a moment too early and have to be sent once more.
_SLACK_SECONDS = 1.0


@dataclass(frozen=True)
class Delivery:
    """What one delivery did: ran the job or not, where the job stands, and when to deliver it again (None:
    never: it is finished, or unknown to the store)."""

    repo_id: str
    sha: str
    ran: bool
    status: JobStatus | None
    come_back_at: float | None

    def describe(self) -> str:
        what = f"{self.repo_id}@{self.sha[:12]}"
        if self.status is None:
            return f"{what}: no such job in the state database; nothing to do"
        done = "ran" if self.ran else "not run (a duplicate delivery)" if self.come_back_at is None else "not run"
        return f"{what}: {done}; the job is {self.status.value}"


class JobDeliveries:
    """A worker process's deliveries: its own Worker (the one way a job is run) and lease heartbeat."""

    def __init__(self, store: Store, settings: Settings, handler: Handler, *, worker_id: str,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.store = store
        self.settings = settings
        self.worker = Worker(store, settings, handler=handler, worker_id=worker_id, clock=clock)
        self.clock = clock
        self._heartbeat = Heartbeat(store, worker_id=worker_id, lease_seconds=settings.lease_seconds, clock=clock)
        self._heartbeat.start()

    def deliver(self, repo_id: str, sha: str) -> Delivery:
        """Runs the job for (repo_id, sha) if this delivery can lease it in the store.

        Raises:
            StoreError: the state database could not be read or written (the delivery should come back).
        """
        s = self.settings
        job = self.store.claim(repo_id, sha, worker_id=self.worker.worker_id, lease_seconds=s.lease_seconds,
                               max_attempts=s.max_attempts, now=self.clock())  # fmt: skip
        if job is None:
            return _delivery(repo_id, sha, self.store.find_job(repo_id, sha), ran=False)
        self._heartbeat.watch(job.id)
        try:
            self.worker.perform(job)
        finally:
            self._heartbeat.watch(None)
        return _delivery(repo_id, sha, self.store.get_job(job.id), ran=True)

    def close(self) -> None:
        self._heartbeat.stop()
        close = getattr(self.worker.handler, "close", None)
        if callable(close):
            close()  # the resident scanning child, if the handler keeps one


def _delivery(repo_id: str, sha: str, job: Job | None, *, ran: bool) -> Delivery:
    come_back_at = None
    if job is not None and job.status is JobStatus.QUEUED:
        come_back_at = job.next_run_at  # waiting for a retry
    elif job is not None and job.status is JobStatus.RUNNING:
        come_back_at = job.lease_expires_at  # another worker holds it (or this one could not record the outcome)
    return Delivery(repo_id, sha, ran, job.status if job is not None else None, come_back_at)


# -- the worker process's deliveries, built once per process (a prefork pool child) ------------------------------

_deliveries: JobDeliveries | None = None
_deliveries_pid: int | None = None


def _process_deliveries(settings: Settings, hostname: str | None) -> JobDeliveries:
    global _deliveries, _deliveries_pid
    if _deliveries is None or _deliveries_pid != os.getpid():
        from bot.service import Bot  # torch comes with it: only in the process that runs the tasks

        bot = Bot.from_settings(settings)
        worker_id = f"{hostname or socket.gethostname()}:{os.getpid()}"
        _deliveries = JobDeliveries(bot.store, settings, bot.handler(), worker_id=worker_id)
        _deliveries_pid = os.getpid()
    return _deliveries


@worker_process_shutdown.connect
def _close_process_deliveries(**_: object) -> None:
    if _deliveries is not None and _deliveries_pid == os.getpid():
        _deliveries.close()


def register(app: Celery, settings: Settings) -> None:
    """Adds the scan task, run against `settings` (the state database, the Hub, the device), to `app`."""

    @app.task(name=SCAN_TASK, bind=True)
    def scan(task, repo_id: str, sha: str) -> str:
        try:
            delivery = _process_deliveries(settings, task.request.hostname).deliver(repo_id, sha)
        except ClipAuditError as exc:  # the state database: the job stays where it is there; deliver it again
            delay = settings.backoff_seconds[0]
            logger.warning("%s@%s: %s; delivered again in %.0f s", repo_id, sha[:12], exc, delay)
            raise task.retry(countdown=delay, max_retries=None) from None
        if delivery.come_back_at is not None:
            delay = max(0.0, delivery.come_back_at - time.time()) + _SLACK_SECONDS
            logger.info("%s; delivered again in %.0f s", delivery.describe(), delay)
            raise task.retry(countdown=delay, max_retries=None)
        return delivery.describe()


def default_node_name() -> str:
    """A Celery node name of its own per worker process on a host (Celery warns about duplicates)."""
    return f"clip-audit-{os.getpid()}@{socket.gethostname()}"


def run_worker(settings: Settings, *, concurrency: int, name: str | None, verbose: bool) -> None:
    """`clip-audit worker --backend celery`: consumes scan tasks until SIGTERM (warm: the running task ends
    first; its message is acknowledged only then) or SIGQUIT (cold)."""
    app = celery_app(settings)
    register(app, settings)
    if not verbose:  # a line per Hub request is for debugging (the worker logs at INFO: its jobs, Celery's tasks)
        logging.getLogger("httpx").setLevel(logging.WARNING)
    app.worker_main(["worker", "--pool=prefork", f"--concurrency={concurrency}", f"--queues={SCAN_QUEUE}",
                     f"--hostname={name or default_node_name()}", f"--loglevel={'DEBUG' if verbose else 'INFO'}",
                     # No worker-to-worker chatter: nothing here uses it, and it is broker traffic.
                     "--without-gossip", "--without-mingle", "--without-heartbeat"])  # fmt: skip
