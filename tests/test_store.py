"""The SQLite Store: schema versions, the job queue's leases, and the once-only records."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from bot.errors import SkipReason, SkipRepo, StoreError
from bot.scan_record import RECORD_VERSION, ScanRecord, Verdict
from bot.state import LATEST_VERSION, JobStatus, MentionStatus, Store

SHA_A, SHA_B = "a" * 40, "b" * 40


# -- schema ----------------------------------------------------------------------------------------------


def test_fresh_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    Store(path).close()  # reopening does not migrate twice
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [row[0] for row in conn.execute("SELECT version FROM schema_version")] == list(range(1, LATEST_VERSION + 1))
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (LATEST_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this bot"):
        Store(path)


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        Store(path)


# -- repos, cursors --------------------------------------------------------------------------------------


def test_upsert_repo_says_when_the_sha_is_new(store: Store) -> None:
    assert store.upsert_repo("acme/clip", SHA_A, family="clip") is True
    assert store.upsert_repo("acme/clip", SHA_A) is False
    assert store.upsert_repo("acme/clip", SHA_B, last_modified="2026-01-02T00:00:00+00:00") is True
    row = store.get_repo("acme/clip")
    assert row is not None and row.sha == SHA_B and row.family == "clip"
    assert row.last_modified == "2026-01-02T00:00:00+00:00"
    assert store.get_repo("acme/other") is None


def test_cursors(store: Store) -> None:
    assert store.get_cursor("watch") is None
    store.set_cursor("watch", "1")
    store.set_cursor("watch", "2")
    assert store.get_cursor("watch") == "2"


# -- jobs ------------------------------------------------------------------------------------------------


def test_enqueue_is_unique_per_repo_and_sha(store: Store) -> None:
    job = store.enqueue(repo_id="acme/clip", sha=SHA_A, reason="new-upload", revision="main", now=100.0)
    assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 0 and job.next_run_at == 100.0
    assert store.enqueue(repo_id="acme/clip", sha=SHA_A, reason="mention", requested_by="eve") is None
    assert store.find_job("acme/clip", SHA_A) == job
    assert store.enqueue(repo_id="acme/clip", sha=SHA_B, reason="new-revision") is not None
    assert [j.sha for j in store.jobs()] == [SHA_A, SHA_B]


def test_lease_takes_due_jobs_people_first(store: Store) -> None:
    store.enqueue(repo_id="acme/later", sha=SHA_A, reason="new-upload", now=500.0)
    watcher = store.enqueue(repo_id="acme/watched", sha=SHA_A, reason="new-upload", now=100.0)
    asked = store.enqueue(repo_id="acme/asked", sha=SHA_A, reason="mention", requested_by="eve", discussion_num=3,
                          now=200.0)  # fmt: skip
    assert watcher is not None and asked is not None
    first = store.lease_next(worker_id="w1", lease_seconds=60, now=300.0)
    assert first is not None and first.id == asked.id and first.discussion_num == 3
    assert first.status is JobStatus.RUNNING and first.lease_owner == "w1" and first.lease_expires_at == 360.0
    assert first.attempts == 1
    second = store.lease_next(worker_id="w1", lease_seconds=60, now=300.0)
    assert second is not None and second.id == watcher.id
    assert store.lease_next(worker_id="w1", lease_seconds=60, now=300.0) is None  # acme/later is not due


def test_expired_lease_is_taken_over_and_the_old_worker_cannot_finish(store: Store) -> None:
    job = store.enqueue(repo_id="acme/clip", sha=SHA_A, reason="new-upload", now=0.0)
    assert job is not None
    assert store.lease_next(worker_id="dead", lease_seconds=10, now=1.0) is not None
    assert store.lease_next(worker_id="w2", lease_seconds=10, now=10.9) is None  # lease still held
    assert store.heartbeat(job.id, worker_id="dead", lease_seconds=10, now=5.0) is True  # now held until 15
    assert store.lease_next(worker_id="w2", lease_seconds=10, now=14.0) is None
    taken = store.lease_next(worker_id="w2", lease_seconds=10, now=15.0)
    assert taken is not None and taken.lease_owner == "w2" and taken.attempts == 2
    assert taken.last_error is not None and "lease of dead expired" in taken.last_error
    assert store.heartbeat(job.id, worker_id="dead", lease_seconds=10) is False
    assert store.complete(job.id, worker_id="dead") is False
    assert store.complete(job.id, worker_id="w2") is True
    done = store.get_job(job.id)
    assert done is not None and done.status is JobStatus.DONE and done.lease_owner is None


def test_expired_lease_on_the_last_attempt_fails_the_job(store: Store) -> None:
    job = store.enqueue(repo_id="acme/clip", sha=SHA_A, reason="new-upload", now=0.0)
    assert job is not None
    store.lease_next(worker_id="w1", lease_seconds=10, now=0.0, max_attempts=1)
    assert store.lease_next(worker_id="w2", lease_seconds=10, now=100.0, max_attempts=1) is None
    failed = store.get_job(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED and "lease expired" in (failed.last_error or "")


def test_fail_retry_release_skip_and_counts(store: Store) -> None:
    a = store.enqueue(repo_id="acme/a", sha=SHA_A, reason="r", now=0.0)
    b = store.enqueue(repo_id="acme/b", sha=SHA_A, reason="r", now=0.0)
    c = store.enqueue(repo_id="acme/c", sha=SHA_A, reason="r", now=0.0)
    d = store.enqueue(repo_id="acme/d", sha=SHA_A, reason="r", now=0.0)
    assert a and b and c and d
    for _ in range(4):
        store.lease_next(worker_id="w", lease_seconds=60, now=1.0)
    assert store.fail(a.id, worker_id="other", error="x", retry_at=5.0) is False  # not the lease holder
    assert store.fail(a.id, worker_id="w", error="boom", retry_at=50.0) is True
    assert store.fail(b.id, worker_id="w", error="boom for good", retry_at=None) is True
    store.skip(c.id, SkipRepo(SkipReason.OVERSIZED, "too big"))
    assert store.release(d.id, worker_id="w", now=2.0) is True
    retried = store.get_job(a.id)
    assert retried is not None and retried.status is JobStatus.QUEUED and retried.next_run_at == 50.0
    assert retried.last_error == "boom" and retried.lease_owner is None
    assert store.queue_counts() == {"queued": 2, "running": 0, "done": 0, "failed": 1, "skipped": 1}
    assert [j.repo_id for j in store.jobs(JobStatus.QUEUED)] == ["acme/a", "acme/d"]
    assert [(s.repo_id, s.reason) for s in store.skips()] == [("acme/c", "oversized: too big")]
    again = store.lease_next(worker_id="w", lease_seconds=60, now=3.0)
    assert again is not None and again.id == d.id  # released: due at once; acme/a waits until 50
    with pytest.raises(StoreError):
        store.skip(9999, SkipRepo(SkipReason.GATED, "no such job"))


def test_concurrent_leases_hand_out_each_job_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as setup:
        for index in range(30):
            setup.enqueue(repo_id=f"acme/m{index}", sha=SHA_A, reason="r", now=0.0)
    shared = Store(path)
    taken: list[int] = []
    lock = threading.Lock()

    def drain(worker: str) -> None:
        while (job := shared.lease_next(worker_id=worker, lease_seconds=60, now=1.0)) is not None:
            with lock:
                taken.append(job.id)

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shared.close()
    assert sorted(taken) == list(range(1, 31))


def _enqueue_in_child(store: Store) -> None:
    store.enqueue(repo_id="acme/from-child", sha=SHA_A, reason="r")
    store.close()


def test_a_forked_child_opens_its_own_connection(store: Store) -> None:
    store.enqueue(repo_id="acme/from-parent", sha=SHA_A, reason="r")
    child = multiprocessing.get_context("fork").Process(target=_enqueue_in_child, args=(store,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert [j.repo_id for j in store.jobs()] == ["acme/from-parent", "acme/from-child"]


# -- scans, posts, opt-outs, events ------------------------------------------------------------------------


def test_scans_are_recorded_once(store: Store) -> None:
    store.record_scan(repo_id="acme/a", sha=SHA_A, record_json='{"n": 1}', verdict="clean")
    store.record_scan(repo_id="acme/a", sha=SHA_A, record_json='{"n": 2}', verdict="backdoor")
    store.record_scan(repo_id="acme/b", sha=SHA_A, record_json='{"n": 3}', verdict="backdoor")
    scan = store.get_scan("acme/a", SHA_A)
    assert scan is not None and scan.record_json == '{"n": 1}' and scan.verdict == "clean"
    assert store.get_scan("acme/a", SHA_B) is None
    assert [s.repo_id for s in store.all_scans()] == ["acme/a", "acme/b"]
    assert [s.repo_id for s in store.latest_scans(limit=1)] == ["acme/b"]


def test_scan_rows_give_back_the_scan_record(store: Store) -> None:
    record = ScanRecord(record_version=RECORD_VERSION, model="acme/a", revision=SHA_A, family="clip",
                        format="transformers-clip", anchor=None, verdict=Verdict.BACKDOOR, checks=[],
                        target_captions=[], triggers=[], landscape=None, assimilation_with_trigger=[0.9],
                        assimilation_without_trigger=[0.1], attention_share_per_layer=[], restarts=1, steps=2,
                        seed=0, timings={"total": 1.0}, device="cpu", versions={})  # fmt: skip
    store.record_scan(repo_id="acme/a", sha=SHA_A, record_json=record.to_json(), verdict=record.verdict.value)
    row = store.get_scan("acme/a", SHA_A)
    assert row is not None and row.verdict == "backdoor" and row.record() == record


def test_skips_keep_the_latest_reason(store: Store) -> None:
    store.record_skip(repo_id="acme/a", sha=SHA_A, skip=SkipRepo(SkipReason.GATED, "x"))
    store.record_skip(repo_id="acme/a", sha=SHA_A, skip=SkipRepo(SkipReason.OVERSIZED, "y"))
    assert [(s.repo_id, s.skip_reason, s.reason) for s in store.skips()] == [
        ("acme/a", SkipReason.OVERSIZED, "oversized: y")]


def test_threads_and_posts(store: Store) -> None:
    assert store.get_thread("acme/a") is None
    store.record_thread(repo_id="acme/a", discussion_num=4)
    thread = store.get_thread("acme/a")
    assert thread is not None and thread.discussion_num == 4 and thread.status == "open"
    store.mark_thread_closed("acme/a")
    closed = store.get_thread("acme/a")
    assert closed is not None and closed.status == "closed"

    assert store.has_post("acme/a", SHA_A) is False
    assert store.record_post(repo_id="acme/a", sha=SHA_A, discussion_num=4, comment_id="c1", kind="report") is True
    assert store.record_post(repo_id="acme/a", sha=SHA_A, discussion_num=4, comment_id="c2", kind="report") is False
    assert store.record_post(repo_id="acme/a", sha=SHA_A, discussion_num=4, comment_id=None, kind="answer") is True
    assert store.has_post("acme/a", SHA_A) and store.has_post("acme/a", SHA_A, "answer")
    assert not store.has_post("acme/a", SHA_B)
    assert [(p.kind, p.comment_id) for p in store.posts("acme/a")] == [("report", "c1"), ("answer", None)]

    assert store.get_badge_pr("acme/a") is None
    store.record_badge_pr(repo_id="acme/a", sha=SHA_A, pr_num=5)
    store.record_badge_pr(repo_id="acme/a", sha=SHA_B, pr_num=9)
    assert store.get_badge_pr("acme/a") == 9


def test_opt_out(store: Store) -> None:
    assert store.is_opted_out("acme/a") is False
    store.set_opt_out("acme/a", True)
    store.set_opt_out("acme/a", True)
    assert store.is_opted_out("acme/a") is True and store.is_opted_out("acme/b") is False
    store.set_opt_out("acme/a", False)
    assert store.is_opted_out("acme/a") is False


# -- mention events ----------------------------------------------------------------------------------------


def _mention(store: Store, event_id: str, *, now: float, source: str = "webhook") -> bool:
    return store.record_mention(event_id=event_id, repo_id="acme/a", discussion_num=2, comment_id=event_id,
                                author=None, author_id="u1", text="@bot help", is_pull_request=False, source=source,
                                now=now)  # fmt: skip


def test_a_mention_is_stored_once_whichever_source_sees_it(store: Store) -> None:
    assert _mention(store, "c1", now=10.0) is True
    assert _mention(store, "c1", now=11.0, source="poll") is False  # a redelivery, or polling after the webhook
    [row] = store.mention_events()
    assert (row.event_id, row.source, row.status, row.attempts, row.next_attempt_at, row.is_pull_request) == (
        "c1", "webhook", MentionStatus.PENDING, 0, 10.0, False)  # fmt: skip
    assert store.knows_mention("c1") and not store.knows_mention("c2")
    assert store.next_mention_due() == 10.0


def test_mentions_are_leased_retried_and_settled_once(store: Store) -> None:
    _mention(store, "c1", now=10.0)
    _mention(store, "c2", now=20.0)
    assert store.lease_mention(owner="p1", lease_seconds=30, max_attempts=3, now=5.0) is None  # not due yet
    first = store.lease_mention(owner="p1", lease_seconds=30, max_attempts=3, now=25.0)
    second = store.lease_mention(owner="p2", lease_seconds=30, max_attempts=3, now=25.0)
    assert (first.event_id, first.status, first.attempts, first.lease_expires_at) == (  # type: ignore[union-attr]
        "c1", MentionStatus.RUNNING, 1, 55.0)  # fmt: skip
    assert second is not None and second.event_id == "c2"
    assert store.lease_mention(owner="p3", lease_seconds=30, max_attempts=3, now=26.0) is None  # both held

    assert store.fail_mention("c1", owner="p2", error="not my lease", retry_at=None) is False
    assert store.fail_mention("c1", owner="p1", error="HubUnavailableError: 500", retry_at=40.0) is True
    assert store.finish_mention("c2", owner="p2", outcome="answered: help") is True
    assert store.finish_mention("c2", owner="p2", outcome="again") is False  # settled already
    again = store.lease_mention(owner="p1", lease_seconds=30, max_attempts=3, now=40.0)
    assert again is not None
    assert (again.event_id, again.attempts, again.last_error) == ("c1", 2, "HubUnavailableError: 500")
    assert store.finish_mention("c1", owner="p1", outcome="answered: help")
    assert [(m.event_id, m.status, m.outcome) for m in store.mention_events()] == [
        ("c1", MentionStatus.HANDLED, "answered: help"), ("c2", MentionStatus.HANDLED, "answered: help")]
    assert store.mention_counts() == {"pending": 0, "running": 0, "handled": 2, "failed": 0}
    assert store.next_mention_due() is None


def test_an_expired_mention_lease_is_taken_over_or_failed_on_the_last_attempt(store: Store) -> None:
    _mention(store, "c1", now=0.0)
    store.lease_mention(owner="dead", lease_seconds=10, max_attempts=2, now=1.0)
    assert store.next_mention_due() == 11.0
    taken = store.lease_mention(owner="alive", lease_seconds=10, max_attempts=2, now=11.0)
    assert taken is not None and (taken.lease_owner, taken.attempts) == ("alive", 2)
    assert store.finish_mention("c1", owner="dead", outcome="late") is False  # the old owner cannot settle it
    assert store.lease_mention(owner="third", lease_seconds=10, max_attempts=2, now=21.0) is None
    failed = store.get_mention("c1")
    assert failed is not None and failed.status is MentionStatus.FAILED
    assert failed.last_error == "lease expired on the last attempt (the processor stopped)"


def test_seen_events_of_an_older_database_become_handled_mentions(tmp_path: Path) -> None:
    import sqlite3

    from bot.state.schema import MIGRATIONS, _statements

    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for migration in MIGRATIONS[:3]:
        for statement in _statements(migration.sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (migration.version,))
    conn.execute("INSERT INTO seen_events (event_id, seen_at) VALUES ('old-comment', 5.0)")
    conn.close()
    with Store(path) as store:
        [row] = store.mention_events()
        assert (row.event_id, row.status, row.created_at) == ("old-comment", MentionStatus.HANDLED, 5.0)
        assert _mention(store, "old-comment", now=6.0) is False  # answered before: never again
        assert store.lease_mention(owner="p", lease_seconds=10, max_attempts=3, now=100.0) is None


def test_thread_connections_can_be_closed_when_a_thread_ends(store: Store) -> None:
    def in_thread() -> None:
        store.enqueue(repo_id="acme/t", sha=SHA_A, reason="r")
        store.close_thread_connection()

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert len(store._connections) == 1  # only the test thread's connection is left open
    assert [j.repo_id for j in store.jobs()] == ["acme/t"]


def test_skips_written_before_the_code_column_get_their_code(tmp_path: Path) -> None:
    import sqlite3

    from bot.state.schema import MIGRATIONS, _statements

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in _statements(MIGRATIONS[0].sql):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    conn.execute("INSERT INTO skips (repo_id, sha, reason, created_at) VALUES (?, ?, ?, 1.0)",
                 ("acme/a", SHA_A, "pickle-only: only pickle weights (pytorch_model.bin)"))
    conn.execute("INSERT INTO skips (repo_id, sha, reason, created_at) VALUES (?, ?, ?, 2.0)",
                 ("acme/b", SHA_A, "no code here"))
    conn.close()
    with Store(path) as store:
        rows = store.skips()
    assert [(s.repo_id, s.skip_reason) for s in rows] == [("acme/a", SkipReason.PICKLE_ONLY), ("acme/b", None)]
    assert rows[0].reason == "pickle-only: only pickle weights (pytorch_model.bin)"
