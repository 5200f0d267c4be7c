"""The worker loop: retries with backoff, skips, heartbeats, warm/cold shutdown and crash recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from worker_helpers import blocking_handler, marker_lines

from bot.errors import CorruptCheckpointError, RateLimitedError, SkipReason, SkipRepo
from bot.settings import Settings, load_settings
from bot.state import Job, JobStatus, Store
from bot.worker import Worker

SHA = "c" * 40
HELPER = Path(__file__).with_name("worker_helpers.py")
WAIT_LIMIT = 60.0  # generous: the machine is shared; these are deadlines, not timing assertions


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"max_attempts": 3, "backoff_seconds": (10.0, 20.0), "lease_seconds": 60.0,
                                 "worker_idle_seconds": 0.05, **overrides}  # fmt: skip
    return load_settings(config_file=None, env={}, stored_token=lambda: None, overrides=values)


@pytest.fixture(autouse=True)
def _no_stray_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # load_settings reads ./clip-audit.toml when there is one


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _job(store: Store, repo_id: str) -> Job:
    job = store.find_job(repo_id, SHA)
    assert job is not None
    return job


# -- in-process ------------------------------------------------------------------------------------------


def test_failing_job_is_retried_with_backoff_then_failed_and_the_worker_survives(store: Store) -> None:
    clock = FakeClock()
    calls: list[str] = []

    def handler(job: Job) -> None:
        calls.append(job.repo_id)
        if job.repo_id == "acme/bad":
            raise RuntimeError("boom")

    store.enqueue(repo_id="acme/bad", sha=SHA, reason="new-upload", now=clock())
    store.enqueue(repo_id="acme/good", sha=SHA, reason="new-upload", now=clock())
    worker = Worker(store, _settings(), handler=handler, worker_id="w", clock=clock)

    assert worker.work(burst=True) == 2
    bad = _job(store, "acme/bad")
    assert bad.status is JobStatus.QUEUED and bad.attempts == 1 and bad.next_run_at == 1_010.0
    assert bad.last_error == "RuntimeError: boom"
    assert _job(store, "acme/good").status is JobStatus.DONE

    clock.now = 1_009.0
    assert worker.work(burst=True) == 0  # not due yet
    clock.now = 1_010.0
    assert worker.work(burst=True) == 1
    assert _job(store, "acme/bad").next_run_at == 1_030.0  # second delay
    clock.now = 1_030.0
    assert worker.work(burst=True) == 1
    failed = _job(store, "acme/bad")
    assert failed.status is JobStatus.FAILED and failed.attempts == 3
    clock.now = 10_000.0
    assert worker.work(burst=True) == 0
    assert calls == ["acme/bad", "acme/good", "acme/bad", "acme/bad"]


def test_skips_permanent_errors_and_rate_limits(store: Store) -> None:
    clock = FakeClock()
    errors: dict[str, Exception] = {
        "acme/skip": SkipRepo(SkipReason.OVERSIZED, "3 GiB"),
        "acme/corrupt": CorruptCheckpointError("truncated header"),
        "acme/limited": RateLimitedError("slow down", retry_after=100.0),
    }

    def handler(job: Job) -> None:
        raise errors[job.repo_id]

    for repo_id in errors:
        store.enqueue(repo_id=repo_id, sha=SHA, reason="new-upload", now=clock())
    assert Worker(store, _settings(), handler=handler, clock=clock).work(burst=True) == 3

    skipped = _job(store, "acme/skip")
    assert skipped.status is JobStatus.SKIPPED and skipped.last_error == "oversized: 3 GiB"
    assert [(s.repo_id, s.skip_reason, s.reason) for s in store.skips()] == [
        ("acme/skip", SkipReason.OVERSIZED, "oversized: 3 GiB")]
    corrupt = _job(store, "acme/corrupt")
    assert corrupt.status is JobStatus.FAILED and corrupt.attempts == 1  # retrying cannot fix that commit
    limited = _job(store, "acme/limited")
    assert limited.status is JobStatus.QUEUED and limited.next_run_at == 1_100.0  # Retry-After beats backoff (10)


def test_heartbeat_renews_the_lease_while_the_handler_runs(store: Store) -> None:
    seen: list[float] = []

    def handler(job: Job) -> None:
        assert job.lease_expires_at is not None
        _wait_for(lambda: (_job(store, job.repo_id).lease_expires_at or 0) > job.lease_expires_at, "a heartbeat")
        seen.append(_job(store, job.repo_id).lease_expires_at or 0)

    job = store.enqueue(repo_id="acme/slow", sha=SHA, reason="new-upload")
    assert job is not None
    assert Worker(store, _settings(lease_seconds=0.3), handler=handler).work(burst=True) == 1
    assert len(seen) == 1 and _job(store, "acme/slow").status is JobStatus.DONE


# -- real processes --------------------------------------------------------------------------------------


def _start_worker(db: Path, markers: Path, *, lease: float) -> subprocess.Popen[str]:
    markers.mkdir(exist_ok=True)
    log = open(markers / "stderr", "w", encoding="utf-8")  # noqa: SIM115 - closed by the child's exit
    return subprocess.Popen([sys.executable, str(HELPER), str(db), str(markers), str(lease)], cwd=markers,
                            stdout=subprocess.PIPE, stderr=log, text=True)  # fmt: skip


def _stderr(markers: Path) -> str:
    return (markers / "stderr").read_text(encoding="utf-8")


@pytest.fixture
def queued_pair(store: Store) -> Store:
    store.enqueue(repo_id="acme/blocking-1", sha=SHA, reason="new-upload", now=1.0)
    store.enqueue(repo_id="acme/quick-2", sha=SHA, reason="new-upload", now=2.0)
    return store


def test_sigterm_finishes_the_current_job_then_exits(queued_pair: Store, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    process = _start_worker(queued_pair.path, markers, lease=5.0)
    try:
        _wait_for(lambda: "start acme/blocking-1" in marker_lines(markers), "the first job to start")
        process.send_signal(signal.SIGTERM)
        _wait_for(lambda: "warm shutdown" in _stderr(markers), "the worker to take the signal")
        (markers / "release").touch()
        stdout, _ = process.communicate(timeout=WAIT_LIMIT)
    finally:
        process.kill()
    assert process.returncode == 0 and "shutdown=warm" in stdout
    assert marker_lines(markers) == ["start acme/blocking-1", "done acme/blocking-1"]
    assert _job(queued_pair, "acme/blocking-1").status is JobStatus.DONE
    assert _job(queued_pair, "acme/quick-2").status is JobStatus.QUEUED  # no new job after the signal


def test_second_sigterm_stops_at_once_and_gives_the_job_back(queued_pair: Store, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    process = _start_worker(queued_pair.path, markers, lease=5.0)
    try:
        _wait_for(lambda: "start acme/blocking-1" in marker_lines(markers), "the first job to start")
        process.send_signal(signal.SIGTERM)
        _wait_for(lambda: "warm shutdown" in _stderr(markers), "the worker to take the signal")
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=WAIT_LIMIT)
    finally:
        process.kill()
    assert process.returncode == 0 and "shutdown=cold" in stdout
    assert marker_lines(markers) == ["start acme/blocking-1"]
    released = _job(queued_pair, "acme/blocking-1")
    assert released.status is JobStatus.QUEUED and released.lease_owner is None
    assert _job(queued_pair, "acme/quick-2").status is JobStatus.QUEUED


def test_killed_worker_job_is_leased_again_after_the_lease_and_done_once(queued_pair: Store, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    process = _start_worker(queued_pair.path, markers, lease=1.0)
    try:
        _wait_for(lambda: "start acme/blocking-1" in marker_lines(markers), "the first job to start")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=WAIT_LIMIT)
    finally:
        process.kill()
    orphan = _job(queued_pair, "acme/blocking-1")
    assert orphan.status is JobStatus.RUNNING and orphan.lease_owner == "sub-markers"

    (markers / "release").touch()
    rescuer = Worker(queued_pair, _settings(lease_seconds=1.0), handler=blocking_handler(markers), worker_id="rescuer")
    _wait_for(lambda: rescuer.work(burst=True) > 0 and _job(queued_pair, "acme/blocking-1").status is JobStatus.DONE,
              "the orphaned job to be leased again after its lease ended")  # fmt: skip
    rescuer.work(burst=True)  # a later pass must not run the rescued job a second time

    done = _job(queued_pair, "acme/blocking-1")
    assert done.status is JobStatus.DONE and done.attempts == 2
    assert marker_lines(markers).count("done acme/blocking-1") == 1
    assert marker_lines(markers).count("start acme/blocking-1") == 2
    assert queued_pair.queue_counts() == {"queued": 0, "running": 0, "done": 2, "failed": 0, "skipped": 0}
