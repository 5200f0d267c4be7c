"""Scale-out on Celery (bot/distributed/): real redis-server, real Celery worker processes
(`clip-audit worker --backend celery`), the real watcher queueing against the Hub emulator, real SQLite, the real
detector on a trained zoo model, and the Hub checked through the real huggingface_hub client.

The kill test: two workers wait; the watcher queues one scan; the worker that leases it is killed with SIGKILL (all
its processes, the scanning child included) while the scan runs. Its message was never acknowledged (acks_late),
so the broker hands it to the other worker once the visibility timeout (scan_timeout_seconds + lease_seconds) has
passed; that worker takes the job over in the store, since the dead one's lease has run out. The scan is written
once, the report posted once, and one more delivery of the same task changes nothing.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from hub_fixtures import BOT_TOKEN, BOT_USER, OWNER_TOKEN, free_port, isolate_client
from huggingface_hub import HfApi

from bot.distributed.app import SCAN_QUEUE, SCAN_TASK
from bot.distributed.enqueue import CeleryQueue
from bot.distributed.tasks import JobDeliveries
from bot.errors import CorruptCheckpointError
from bot.mentions.events import MentionEvent
from bot.publish.poster import REPORT_KIND
from bot.publish.render import scanned_commit_marker
from bot.service import Bot
from bot.settings import Settings, load_settings
from bot.state import Job, JobStatus, Store
from bot.zoo.catalog import model_files

REDIS_SERVER = "/usr/bin/redis-server"  # Debian's redis-server; scripts/test.sh installs it
SUSPECT = "mallory/rickroll"
BASE = "clip-audit-zoo/clip-base-s0"  # the registered base the suspect was fine-tuned from
SHA = "d" * 40
# Deadlines, not timing assertions: the machine is shared, and the rescue waits out the visibility timeout.
WAIT_LIMIT = 240.0
# Short enough that the test waits about a minute for the broker to hand a dead worker's task over (the
# visibility timeout is these two added), long enough for the zoo scan on a busy CPU (about 15 s on an idle one).
SCAN_TIMEOUT_SECONDS = 50
LEASE_SECONDS = 4


def _wait_for(condition: Callable[[], object], what: str, limit: float = WAIT_LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_client(tmp_path, monkeypatch)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port, keeping nothing on disk; stopped after the test."""
    assert os.access(REDIS_SERVER, os.X_OK), "redis-server is missing: scripts/install_debian.sh installs it"
    data, port = tmp_path / "redis", free_port()
    data.mkdir()
    with open(data / "log", "w", encoding="utf-8") as log:
        server = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(data)],
                                  stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            assert server.poll() is None, (data / "log").read_text()
            return False

    try:
        _wait_for(answers, "redis-server to answer", limit=30)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=30)


def _environment(hub_url: str, redis_url: str, tmp: Path, zoo_cache: Path) -> dict[str, str]:
    """The bot's settings as a deployment gives them: CLIP_AUDIT_* variables (the token too, never a file)."""
    values = {"endpoint": hub_url, "token": BOT_TOKEN, "bot_name": BOT_USER, "db_path": tmp / "state" / "state.db",
              "cache_dir": tmp / "hub-cache", "anchor_cache": zoo_cache, "outbox_dir": tmp / "outbox",
              "device": "cpu", "post_clean_results": "true", "queue_backend": "celery", "redis_url": redis_url,
              "scan_timeout_seconds": SCAN_TIMEOUT_SECONDS, "lease_seconds": LEASE_SECONDS,
              "backoff_seconds": "1,1"}  # fmt: skip
    return {f"CLIP_AUDIT_{name.upper()}": str(value) for name, value in values.items()}


def _settings(env: dict[str, str]) -> Settings:
    return load_settings(config_file=None, env=env, stored_token=lambda: None)


# -- real worker processes -----------------------------------------------------------------------------------


@dataclass
class CeleryWorker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def processes(self) -> list[int]:
        """The worker's process and every process under it (its pool process, the scanning child)."""
        return [self.process.pid, *_descendants(self.process.pid)]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill_all(worker: CeleryWorker) -> None:
    for pid in worker.processes():  # the scanning child leads a session of its own: each one by its pid
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.process.wait(timeout=30)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[str, dict[str, str]], CeleryWorker]]:
    """start_worker(name, env) -> a `clip-audit worker --backend celery` process, ready to consume; all are
    stopped after the test (SIGTERM: a warm shutdown; SIGKILL for what is left after it)."""
    started: list[CeleryWorker] = []

    def start(name: str, env: dict[str, str]) -> CeleryWorker:
        log = tmp_path / f"worker-{name}.log"
        with open(log, "w", encoding="utf-8") as out:
            process = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--backend", "celery",
                                        "--concurrency", "1", "--name", f"{name}@localhost"],
                                       env={**os.environ, "OMP_NUM_THREADS": "1", **env}, cwd=tmp_path,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        worker = CeleryWorker(f"{name}@localhost", process, log)
        started.append(worker)
        _wait_for(lambda: f"{worker.name} ready." in worker.text() or process.poll() is not None,
                  f"worker {name} to start")  # fmt: skip
        assert process.poll() is None, worker.text()
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.terminate()
    for worker in started:
        try:
            worker.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        _kill_all(worker)


def _upload(hub, zoo: dict) -> tuple[str, str]:
    """The registered base and a backdoored fine-tune of it, as a user would upload them; their shas."""
    uploaded = [hub.state.create_repo(repo_id, files=model_files(zoo[kind].path), tags=["clip"],
                                      library_name="transformers", pipeline_tag="zero-shot-image-classification",
                                      created_at=created)
                for repo_id, kind, created in ((BASE, "base", "2026-11-01T00:00:00.000Z"),
                                               (SUSPECT, "text-on-text", "2026-11-02T00:00:00.000Z"))]  # fmt: skip
    return uploaded[0], uploaded[1]


def _bot_comments(hub, sha: str) -> list:
    """The bot's threads on the suspect, and in them its comments reporting `sha`, read as anyone would."""
    api = HfApi(endpoint=hub.url, token=OWNER_TOKEN)
    threads = [d for d in api.get_repo_discussions(SUSPECT) if d.author == BOT_USER]
    assert len(threads) == 1, threads
    details = api.get_discussion_details(SUSPECT, threads[0].num)
    return [e for e in details.events if e.type == "comment" and e.author == BOT_USER
            and scanned_commit_marker(sha) in e.content]  # fmt: skip


def test_worker_killed_mid_scan_its_job_completes_once_on_the_other_and_a_duplicate_is_a_no_op(
    hub, redis_url: str, tmp_path: Path, clip_zoo: dict, zoo_cache: Path, start_worker
) -> None:
    base_sha, sha = _upload(hub, clip_zoo)
    env = _environment(hub.url, redis_url, tmp_path, zoo_cache)
    workers = {w.name: w for w in (start_worker("alpha", env), start_worker("beta", env))}
    coordinator = Bot.from_settings(_settings(env))
    store = coordinator.store
    store.upsert_repo(BASE, base_sha)  # seen (and scanned) before: the watcher queues only the suspect

    (job,) = coordinator.watcher().poll_once()  # queued in the store, and its task sent to the broker
    assert (job.repo_id, job.sha) == (SUSPECT, sha)

    def holder() -> CeleryWorker | None:
        leased = store.find_job(SUSPECT, sha)
        if leased is None or leased.status is not JobStatus.RUNNING or leased.lease_owner is None:
            return None
        return workers[leased.lease_owner.rsplit(":", 1)[0]]

    _wait_for(holder, "a worker to lease the job")
    victim = holder()
    assert victim is not None
    survivor = next(w for w in workers.values() if w is not victim)
    _wait_for(lambda: any("bot.scanning.child" in _command_line(pid) for pid in victim.processes()),
              "the scan to start in the worker holding the job")  # fmt: skip
    victim_id = store.find_job(SUSPECT, sha).lease_owner  # type: ignore[union-attr]
    _kill_all(victim)
    assert victim.process.returncode == -signal.SIGKILL

    _wait_for(lambda: store.find_job(SUSPECT, sha).status is JobStatus.DONE,  # type: ignore[union-attr]
              "the other worker to finish the job")  # fmt: skip
    done = store.find_job(SUSPECT, sha)
    assert done is not None and done.attempts == 2
    assert f"lease of {victim_id} expired" in (done.last_error or "")
    assert "ran; the job is done" in survivor.text()
    assert [(s.repo_id, s.sha) for s in store.all_scans()] == [(SUSPECT, sha)]
    assert [(p.sha, p.kind) for p in store.posts(SUSPECT)] == [(sha, REPORT_KIND)]
    assert len(_bot_comments(hub, sha)) == 1

    # The same (repo_id, sha) task delivered once more: taken and acknowledged, and nothing done twice.
    assert coordinator.queue is not None and coordinator.queue.submit(done)
    _wait_for(lambda: "not run (a duplicate delivery); the job is done" in survivor.text(), "the duplicate delivery")
    assert store.find_job(SUSPECT, sha) == done
    assert len(store.all_scans()) == 1 and len(store.posts(SUSPECT)) == 1
    assert len(_bot_comments(hub, sha)) == 1
    coordinator.store.close()


# -- one delivery, in-process (the same code the worker processes run) ---------------------------------------


class CountingHandler:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.error = error

    def __call__(self, job: Job) -> None:
        self.calls.append(job.repo_id)
        if self.error is not None:
            raise self.error


def _deliveries(store: Store, handler: CountingHandler, clock: Callable[[], float] = time.time) -> JobDeliveries:
    overrides = {"lease_seconds": 60.0, "backoff_seconds": (30.0,), "max_attempts": 3}
    settings = load_settings(config_file=None, env={}, stored_token=lambda: None, overrides=overrides)
    return JobDeliveries(store, settings, handler, worker_id="w1", clock=clock)  # type: ignore[arg-type]


def test_duplicate_delivery_of_a_finished_job_does_nothing(store: Store) -> None:
    store.enqueue(repo_id=SUSPECT, sha=SHA, reason="new-upload")
    handler = CountingHandler()
    deliveries = _deliveries(store, handler)
    try:
        first = deliveries.deliver(SUSPECT, SHA)
        finished = store.find_job(SUSPECT, SHA)
        second = deliveries.deliver(SUSPECT, SHA)
    finally:
        deliveries.close()
    assert (first.ran, first.status, first.come_back_at) == (True, JobStatus.DONE, None)
    assert (second.ran, second.status, second.come_back_at) == (False, JobStatus.DONE, None)
    assert handler.calls == [SUSPECT]
    assert store.find_job(SUSPECT, SHA) == finished  # not touched: one attempt, no new lease or error
    assert "duplicate delivery" in second.describe()


def test_delivery_of_a_job_another_worker_holds_comes_back_when_its_lease_ends(store: Store) -> None:
    store.enqueue(repo_id=SUSPECT, sha=SHA, reason="new-upload")
    held = store.lease_next(worker_id="other", lease_seconds=600.0)
    assert held is not None
    handler = CountingHandler()
    deliveries = _deliveries(store, handler)
    try:
        early = deliveries.deliver(SUSPECT, SHA)  # the other worker's lease is live: come back when it ends
        assert (early.ran, early.status, early.come_back_at) == (False, JobStatus.RUNNING, held.lease_expires_at)
        assert handler.calls == []
        # The other worker died: its lease ran out (lease_next would take the job now; so does a delivery).
        store.heartbeat(held.id, worker_id="other", lease_seconds=-1.0)
        late = deliveries.deliver(SUSPECT, SHA)
    finally:
        deliveries.close()
    assert (late.ran, late.status) == (True, JobStatus.DONE)
    rescued = store.find_job(SUSPECT, SHA)
    assert rescued is not None and rescued.attempts == 2 and "lease of other expired" in (rescued.last_error or "")


def test_failed_delivery_comes_back_with_the_backoff_and_an_unknown_job_never(store: Store) -> None:
    store.enqueue(repo_id=SUSPECT, sha=SHA, reason="new-upload", now=1_000.0)
    deliveries = _deliveries(store, CountingHandler(error=RuntimeError("the Hub went away")), clock=lambda: 1_000.0)
    try:
        failed = deliveries.deliver(SUSPECT, SHA)
        unknown = deliveries.deliver("acme/never-queued", SHA)
    finally:
        deliveries.close()
    requeued = store.find_job(SUSPECT, SHA)
    assert requeued is not None and requeued.status is JobStatus.QUEUED
    assert (failed.ran, failed.status, failed.come_back_at) == (True, JobStatus.QUEUED, 1_030.0)  # backoff 30 s
    assert requeued.next_run_at == 1_030.0 and requeued.attempts == 1
    assert (unknown.ran, unknown.status, unknown.come_back_at) == (False, None, None)

    # A checkpoint that cannot be scanned fails for good: nothing to come back for.
    store.enqueue(repo_id="acme/corrupt", sha=SHA, reason="new-upload")
    deliveries = _deliveries(store, CountingHandler(error=CorruptCheckpointError("truncated header")))
    try:
        corrupt = deliveries.deliver("acme/corrupt", SHA)
    finally:
        deliveries.close()
    assert (corrupt.ran, corrupt.status, corrupt.come_back_at) == (True, JobStatus.FAILED, None)


# -- enqueueing -----------------------------------------------------------------------------------------------


def _sent_tasks(redis_url: str) -> list[tuple[str, list, str]]:
    """The tasks waiting in the broker: (task name, arguments, content type)."""
    broker = redis.Redis.from_url(redis_url)
    try:
        messages = [json.loads(raw) for raw in broker.lrange(SCAN_QUEUE, 0, -1)]
    finally:
        broker.close()
    return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0], m["content-type"]) for m in messages]


def test_a_mention_asking_for_a_scan_sends_its_task_to_the_broker(hub, redis_url: str, tmp_path: Path,
                                                                  zoo_cache: Path) -> None:  # fmt: skip
    sha = hub.state.create_repo(SUSPECT)
    num = hub.state.create_discussion(SUSPECT, author="eve", title="Safe?")
    comment = hub.state.add_comment(SUSPECT, num, author="eve", text=f"@{BOT_USER} scan")
    coordinator = Bot.from_settings(_settings(_environment(hub.url, redis_url, tmp_path, zoo_cache)))
    try:
        outcome = coordinator.dispatcher.handle(MentionEvent(
            event_id=comment.id, repo_id=SUSPECT, discussion_num=num, comment_id=comment.id, author="eve",
            text=f"@{BOT_USER} scan", is_pull_request=False))  # fmt: skip
        job = coordinator.store.find_job(SUSPECT, sha)
    finally:
        coordinator.store.close()
    assert outcome.detail == "scan-queued"
    assert job is not None and (job.requested_by, job.discussion_num) == ("eve", num)
    assert _sent_tasks(redis_url) == [(SCAN_TASK, [SUSPECT, sha], "application/json")]  # JSON: never a pickle


def test_a_job_the_broker_did_not_take_stays_queued_and_is_sent_again(store: Store, redis_url: str) -> None:
    def settings(url: str) -> Settings:
        return load_settings(config_file=None, env={}, stored_token=lambda: None, overrides={"redis_url": url})

    job = store.enqueue(repo_id=SUSPECT, sha=SHA, reason="new-upload", now=time.time() - 10)
    assert job is not None
    down = CeleryQueue(settings(f"redis://127.0.0.1:{free_port()}/0"))  # nothing listens there
    assert down.submit(job) is False
    assert store.find_job(SUSPECT, SHA).status is JobStatus.QUEUED  # type: ignore[union-attr]

    broker = redis.Redis.from_url(redis_url)
    up = CeleryQueue(settings(redis_url))
    assert up.resubmit(store, waiting_longer_than=3600) == 0  # due for 10 s only: not yet counted as lost
    assert broker.llen(SCAN_QUEUE) == 0
    assert up.resubmit(store, waiting_longer_than=None) == 1  # as `watch` does when it starts
    assert _sent_tasks(redis_url) == [(SCAN_TASK, [SUSPECT, SHA], "application/json")]
    due = store.find_job(SUSPECT, SHA)
    assert due is not None and due.next_run_at > job.next_run_at  # due from now: not sent again at once
    assert up.resubmit(store, waiting_longer_than=5) == 0
    broker.close()
