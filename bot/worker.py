"""An rq-style worker: lease a job from the Store, run the handler, record the outcome; survive any failure.

- The handler (scan + publish) is passed in; the worker knows nothing about scanning.
- SkipRepo -> the job is skipped with its reason. NothingScannableError, CheckpointError and HubAuthError ->
  failed at once (retrying cannot make the commit scannable or the token good). Any other exception -> retried after
  settings.backoff_seconds[attempt - 1] (the last delay repeats; at least Retry-After for rate limits),
  and failed for good after settings.max_attempts tries.
- While a job runs, a heartbeat thread renews its lease; a worker that dies loses its job to another
  worker once the lease ends (Store.lease_next takes expired leases).
- SIGTERM / SIGINT: warm shutdown (finish the current job, take no more). A second one: cold shutdown
  (interrupt the handler, give the job back to the queue, return).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from types import FrameType

from bot.errors import (
    CheckpointError,
    ClipAuditError,
    HubAuthError,
    NothingScannableError,
    RateLimitedError,
    SkipRepo,
    StoreError,
)
from bot.settings import Settings
from bot.state import Job, Store

logger = logging.getLogger(__name__)

Handler = Callable[[Job], None]
_PERMANENT = (NothingScannableError, CheckpointError, HubAuthError)  # retrying cannot change these


class _ColdShutdown(BaseException):
    """Raised inside the handler by the second shutdown signal (BaseException: handlers must not catch it)."""


class Heartbeat:
    """One thread per worker that renews the lease of whichever job is running (`watch(job_id)`; None: none).
    The built-in loop's, and each Celery worker process's (bot/distributed/tasks.py)."""

    def __init__(self, store: Store, *, worker_id: str, lease_seconds: float, clock: Callable[[], float]) -> None:
        self._store = store
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._job_id: int | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{worker_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, job_id: int | None) -> None:
        with self._lock:
            self._job_id = job_id

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            self._beat_until_stopped()
        finally:
            self._store.close_thread_connection()

    def _beat_until_stopped(self) -> None:
        # A third of the lease: two beats can be missed (a busy disk, a GC pause) before the lease ends.
        while not self._stopped.wait(self._lease_seconds / 3):
            with self._lock:
                job_id = self._job_id
            if job_id is None:
                continue
            try:
                held = self._store.heartbeat(job_id, worker_id=self._worker_id, lease_seconds=self._lease_seconds,
                                             now=self._clock())  # fmt: skip
            except StoreError as exc:
                logger.warning("heartbeat for job %d failed: %s", job_id, exc)
                continue
            if not held:
                logger.warning("lost the lease on job %d: another worker may be running it", job_id)
                self.watch(None)


class Worker:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        handler: Handler,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.handler = handler
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.clock = clock
        self.shutdown: str | None = None  # None | "warm" | "cold": why work() returned early
        self._wake = threading.Event()
        self._in_handler = False

    def __repr__(self) -> str:
        return f"Worker({self.worker_id!r}, store={self.store!r})"

    # -- the loop ---------------------------------------------------------------------------------------------

    def work(self, *, burst: bool = False) -> int:
        """Runs jobs until a shutdown signal (or, with burst, until no job is ready). Returns jobs processed."""
        previous = self._install_signal_handlers()
        heartbeat = Heartbeat(self.store, worker_id=self.worker_id, lease_seconds=self.settings.lease_seconds,
                              clock=self.clock)  # fmt: skip
        heartbeat.start()
        processed = 0
        logger.info("worker %s started%s", self.worker_id, " (burst)" if burst else "")
        try:
            while self.shutdown is None:
                job = self._lease()
                if job is None:
                    if burst:
                        break
                    self._wake.wait(self.settings.worker_idle_seconds)
                    continue
                heartbeat.watch(job.id)
                try:
                    self.perform(job)
                except _ColdShutdown:
                    self.store.release(job.id, worker_id=self.worker_id, now=self.clock())
                    logger.warning("cold shutdown: job %d (%s@%s) given back to the queue", job.id, job.repo_id,
                                   job.sha[:8])  # fmt: skip
                    break
                finally:
                    heartbeat.watch(None)
                processed += 1
        finally:
            heartbeat.stop()
            self._restore_signal_handlers(previous)
            close = getattr(self.handler, "close", None)
            if callable(close):
                close()  # the resident scanning child, if the handler keeps one
        logger.info("worker %s stopped after %d job(s)%s", self.worker_id, processed,
                    f" ({self.shutdown} shutdown)" if self.shutdown else "")  # fmt: skip
        return processed

    def _lease(self) -> Job | None:
        try:
            return self.store.lease_next(worker_id=self.worker_id, lease_seconds=self.settings.lease_seconds,
                                         now=self.clock(), max_attempts=self.settings.max_attempts)  # fmt: skip
        except StoreError as exc:
            logger.error("cannot lease a job: %s", exc)
            return None

    def perform(self, job: Job) -> None:
        """Runs one job this worker holds the lease of and records its outcome: done, skipped, queued again for
        a retry, or failed for good. The one way a job is run: by the loop above, and by a Celery delivery
        (bot/distributed/tasks.py)."""
        logger.info("job %d: %s@%s (%s, attempt %d)", job.id, job.repo_id, job.sha[:8], job.reason, job.attempts)
        error: Exception | None = None
        self._in_handler = True
        try:
            self.handler(job)
        except Exception as exc:  # the loop survives any failing job
            error = exc
        finally:
            self._in_handler = False
        try:
            self._record(job, error)
        except StoreError as exc:
            logger.error("job %d: cannot record its outcome (%s); its lease will expire and it will run again",
                         job.id, exc)  # fmt: skip

    def _record(self, job: Job, error: Exception | None) -> None:
        if error is None:
            if not self.store.complete(job.id, worker_id=self.worker_id):
                logger.warning("job %d finished after its lease was lost; not marked done by this worker", job.id)
            return
        if isinstance(error, SkipRepo):
            logger.info("job %d skipped: %s", job.id, error.reason)
            self.store.skip(job.id, error)
            return
        message = f"{type(error).__name__}: {error}"
        if isinstance(error, ClipAuditError):
            logger.warning("job %d failed: %s", job.id, message)
        else:  # not one of ours: a bug somewhere, so the traceback is worth having in the log
            logger.error("job %d failed", job.id, exc_info=error)
        retry_at = self._retry_at(job, error)
        self.store.fail(job.id, worker_id=self.worker_id, error=message, retry_at=retry_at)
        if retry_at is None:
            logger.warning("job %d failed for good after %d attempt(s)", job.id, job.attempts)

    def _retry_at(self, job: Job, error: Exception) -> float | None:
        if isinstance(error, _PERMANENT) or job.attempts >= self.settings.max_attempts:
            return None
        delays = self.settings.backoff_seconds
        delay = delays[min(job.attempts, len(delays)) - 1]
        if isinstance(error, RateLimitedError):
            delay = max(delay, error.retry_after)
        return self.clock() + delay

    # -- signals ----------------------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, object] | None:
        if threading.current_thread() is not threading.main_thread():
            return None  # signals only reach the main thread; a worker in a thread is stopped by its owner
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, object] | None) -> None:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def request_stop(self) -> None:
        """Warm shutdown from code (another thread): finish the current job, then return."""
        self.shutdown = self.shutdown or "warm"
        self._wake.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.shutdown is None:
            logger.info("%s: warm shutdown, finishing the current job (send again to stop now)", name)
            self.request_stop()
            return
        logger.warning("%s again: cold shutdown", name)
        self.shutdown = "cold"
        self._wake.set()
        if self._in_handler:
            raise _ColdShutdown()
