"""The bot's state in one SQLite database (WAL): repos seen, cursors, the job queue, scans, posts, opt-outs, and
the mentions waiting for an answer.

Each thread (and each process: a forked child never reuses its parent's connection) gets its own connection.
Writes run in BEGIN IMMEDIATE transactions, so concurrent workers serialise on SQLite's lock instead of
racing; `busy_timeout` makes them wait for it. All timestamps are Unix epoch seconds (float).

Durability: a committed transaction survives the process being killed (WAL); with synchronous=NORMAL the
last transactions before a power loss may not (for a mention, polling is the fallback that finds it again).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.errors import SkipRepo, StoreError

from .schema import (
    AnchorPin,
    Job,
    JobStatus,
    MentionRow,
    MentionStatus,
    PostRow,
    RepoRow,
    ScanRow,
    SkipRow,
    ThreadRow,
    migrate,
)

BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another process's transaction before giving up
# A job a worker may take at `now` (twice as a parameter): queued and due, or running under an expired lease.
_TAKEABLE = "(status = 'queued' AND next_run_at <= ?) OR (status = 'running' AND lease_expires_at <= ?)"


def _job(row: sqlite3.Row) -> Job:
    values = {key: row[key] for key in row.keys() if key != "updated_at"}
    return Job(**{**values, "status": JobStatus(row["status"])})


def _row(cls: type, row: sqlite3.Row) -> Any:
    return cls(**{key: row[key] for key in row.keys()})


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the state directory {self.path.parent}: {exc}") from None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[sqlite3.Connection, int]] = []  # (connection, pid that opened it)
        with self._errors("open"):
            migrate(self._conn(), db_name=str(self.path))

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- connections and transactions ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        # isolation_level=None: no implicit transactions; `_write` issues BEGIN IMMEDIATE itself.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._connections.append((conn, os.getpid()))
        return conn

    def close(self) -> None:
        """Closes every connection this Store opened in this process."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn, pid in connections:
            # A connection inherited over fork belongs to the parent: closing it here could drop its locks.
            if pid == os.getpid():
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
        self._local = threading.local()

    def close_thread_connection(self) -> None:
        """Closes the calling thread's connection (call it when a helper thread ends, so none pile up)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            return
        with self._lock:
            self._connections = [(c, pid) for c, pid in self._connections if c is not conn]
        self._local.conn = None
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise StoreError(f"state database {self.path}: cannot {action} ({exc})") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"state database {self.path} is unusable: {exc}") from None

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._errors(action):
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._errors("read"):
            return self._conn().execute(sql, params).fetchall()

    # -- repos and cursors --------------------------------------------------------------------------------

    def upsert_repo(
        self, repo_id: str, sha: str, *, last_modified: str | None = None, family: str | None = None
    ) -> bool:
        """Records the repo's current sha; True when that sha differs from the one recorded (or the repo is new)."""
        now = time.time()
        with self._write("record a repo") as conn:
            row = conn.execute("SELECT sha FROM repos WHERE repo_id = ?", (repo_id,)).fetchone()
            conn.execute(
                "INSERT INTO repos (repo_id, sha, last_modified, family, first_seen_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (repo_id) DO UPDATE SET sha = excluded.sha,"
                " last_modified = COALESCE(excluded.last_modified, last_modified),"
                " family = COALESCE(excluded.family, family), updated_at = excluded.updated_at",
                (repo_id, sha, last_modified, family, now, now),
            )
            return row is None or row["sha"] != sha

    def get_repo(self, repo_id: str) -> RepoRow | None:
        rows = self._read("SELECT * FROM repos WHERE repo_id = ?", (repo_id,))
        return _row(RepoRow, rows[0]) if rows else None

    def get_cursor(self, name: str) -> str | None:
        rows = self._read("SELECT value FROM cursors WHERE name = ?", (name,))
        return rows[0]["value"] if rows else None

    def set_cursor(self, name: str, value: str) -> None:
        with self._write("save a cursor") as conn:
            conn.execute(
                "INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (name, value, time.time()),
            )

    # -- jobs ---------------------------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        repo_id: str,
        sha: str,
        reason: str,
        requested_by: str | None = None,
        discussion_num: int | None = None,
        revision: str | None = None,
        now: float | None = None,
    ) -> Job | None:
        """Queues a scan of (repo_id, sha); None when a job for that pair already exists, whatever its status
        (look it up with find_job, and a finished scan with get_scan)."""
        now = time.time() if now is None else now
        with self._write("queue a job") as conn:
            row = conn.execute(
                "INSERT INTO jobs (repo_id, sha, revision, reason, requested_by, discussion_num, status,"
                " next_run_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)"
                " ON CONFLICT (repo_id, sha) DO NOTHING RETURNING *",
                (repo_id, sha, revision, reason, requested_by, discussion_num, now, now, now),
            ).fetchone()
            return _job(row) if row is not None else None

    def lease_next(
        self, *, worker_id: str, lease_seconds: float, now: float | None = None, max_attempts: int | None = None
    ) -> Job | None:
        """Atomically takes the next runnable job: queued and due, or running with an expired lease (its worker
        died). Requests from people go before the watcher's. With `max_attempts`, an expired job that has used
        all its attempts is failed instead of being run again (a job that keeps killing its worker)."""
        now = time.time() if now is None else now
        with self._write("lease a job") as conn:
            if max_attempts is not None:
                self._fail_expired_last_attempts(conn, now, max_attempts)
            row = conn.execute(
                f"SELECT id, status, lease_owner FROM jobs WHERE {_TAKEABLE}"
                " ORDER BY requested_by IS NULL, next_run_at, id LIMIT 1",
                (now, now),
            ).fetchone()
            return None if row is None else self._take(conn, row, worker_id, lease_seconds, now)

    def claim(
        self, repo_id: str, sha: str, *, worker_id: str, lease_seconds: float, max_attempts: int,
        now: float | None = None,
    ) -> Job | None:  # fmt: skip
        """Leases the job for (repo_id, sha) itself, as lease_next would take it (queued and due, or running
        with an expired lease); None when it is not takeable now: unknown, finished, running under another
        worker's live lease, or not due yet (find_job says which). A Celery delivery of that job's task
        (bot/distributed/tasks.py) runs it only when this succeeds, so that a duplicate delivery never runs a
        job twice."""
        now = time.time() if now is None else now
        with self._write("claim a job") as conn:
            self._fail_expired_last_attempts(conn, now, max_attempts, repo_id=repo_id, sha=sha)
            row = conn.execute(
                f"SELECT id, status, lease_owner FROM jobs WHERE repo_id = ? AND sha = ? AND ({_TAKEABLE})",
                (repo_id, sha, now, now),
            ).fetchone()
            return None if row is None else self._take(conn, row, worker_id, lease_seconds, now)

    @staticmethod
    def _fail_expired_last_attempts(conn: sqlite3.Connection, now: float, max_attempts: int, *,
                                    repo_id: str | None = None, sha: str | None = None) -> None:  # fmt: skip
        """Fails for good the running jobs (of one (repo_id, sha), when given) whose lease expired on their last
        attempt: a job that keeps killing its worker."""
        only = " AND repo_id = ? AND sha = ?" if repo_id is not None else ""
        conn.execute(
            "UPDATE jobs SET status = 'failed', last_error = 'lease expired on the last attempt"
            " (the worker stopped: killed or out of memory?)', lease_owner = NULL, lease_expires_at = NULL,"
            " updated_at = ? WHERE status = 'running' AND lease_expires_at <= ? AND attempts >= ?" + only,
            (now, now, max_attempts, *((repo_id, sha) if only else ())),
        )

    @staticmethod
    def _take(conn: sqlite3.Connection, row: sqlite3.Row, worker_id: str, lease_seconds: float, now: float) -> Job:
        expired = f"lease of {row['lease_owner']} expired" if row["status"] == "running" else None
        leased = conn.execute(
            "UPDATE jobs SET status = 'running', lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1,"
            " last_error = COALESCE(?, last_error), updated_at = ? WHERE id = ? RETURNING *",
            (worker_id, now + lease_seconds, expired, now, row["id"]),
        ).fetchone()
        return _job(leased)

    def heartbeat(self, job_id: int, *, worker_id: str, lease_seconds: float, now: float | None = None) -> bool:
        """Extends the lease; False when this worker no longer holds it (it expired and was taken)."""
        now = time.time() if now is None else now
        with self._write("extend a lease") as conn:
            cursor = conn.execute(
                "UPDATE jobs SET lease_expires_at = ?, updated_at = ? WHERE id = ? AND status = 'running'"
                " AND lease_owner = ?",
                (now + lease_seconds, now, job_id, worker_id),
            )
            return cursor.rowcount == 1

    def complete(self, job_id: int, *, worker_id: str) -> bool:
        """Marks the job done; False (and no change) when this worker no longer holds its lease."""
        return self._finish(job_id, worker_id, "done", None, None)

    def fail(self, job_id: int, *, worker_id: str, error: str, retry_at: float | None) -> bool:
        """Requeues the job for `retry_at`, or (None) fails it for good; False when the lease was lost."""
        if retry_at is None:
            return self._finish(job_id, worker_id, "failed", error, None)
        return self._finish(job_id, worker_id, "queued", error, retry_at)

    def release(self, job_id: int, *, worker_id: str, now: float | None = None) -> bool:
        """Gives a leased job back to the queue at once (a worker shutting down cold)."""
        now = time.time() if now is None else now
        return self._finish(job_id, worker_id, "queued", "worker shut down during the job", now)

    def _finish(self, job_id: int, worker_id: str, status: str, error: str | None, next_run_at: float | None) -> bool:
        with self._write("update a job") as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status = ?, last_error = COALESCE(?, last_error),"
                " next_run_at = COALESCE(?, next_run_at), lease_owner = NULL, lease_expires_at = NULL,"
                " updated_at = ? WHERE id = ? AND status = 'running' AND lease_owner = ?",
                (status, error, next_run_at, time.time(), job_id, worker_id),
            )
            return cursor.rowcount == 1

    def mark_due(self, job_id: int, *, now: float | None = None) -> bool:
        """Makes a queued job due from `now` (it was handed to the broker again: bot/distributed/enqueue.py);
        False when it is not queued."""
        now = time.time() if now is None else now
        with self._write("update a job") as conn:
            cursor = conn.execute("UPDATE jobs SET next_run_at = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
                                  (now, now, job_id))  # fmt: skip
            return cursor.rowcount == 1

    def skip(self, job_id: int, skip: SkipRepo) -> None:
        """Marks the job skipped and records the skip for its (repo_id, sha)."""
        now = time.time()
        reason = skip.reason
        with self._write("skip a job") as conn:
            row = conn.execute(
                "UPDATE jobs SET status = 'skipped', last_error = ?, lease_owner = NULL, lease_expires_at = NULL,"
                " updated_at = ? WHERE id = ? RETURNING repo_id, sha",
                (reason, now, job_id),
            ).fetchone()
            if row is None:
                raise StoreError(f"no job {job_id} in {self.path}")
            self._insert_skip(conn, row["repo_id"], row["sha"], skip, now)

    def get_job(self, job_id: int) -> Job | None:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def find_job(self, repo_id: str, sha: str) -> Job | None:
        rows = self._read("SELECT * FROM jobs WHERE repo_id = ? AND sha = ?", (repo_id, sha))
        return _job(rows[0]) if rows else None

    def jobs(self, status: JobStatus | None = None) -> list[Job]:
        if status is None:
            return [_job(row) for row in self._read("SELECT * FROM jobs ORDER BY id")]
        return [_job(row) for row in self._read("SELECT * FROM jobs WHERE status = ? ORDER BY id", (status.value,))]

    def queue_counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in JobStatus}
        for row in self._read("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status"):
            counts[row["status"]] = row["n"]
        return counts

    # -- scans and skips ----------------------------------------------------------------------------------

    def record_scan(self, *, repo_id: str, sha: str, record_json: str, verdict: str) -> None:
        """Stores a scan result; the first result for a (repo_id, sha) is kept, later ones are ignored."""
        with self._write("record a scan") as conn:
            conn.execute(
                "INSERT INTO scans (repo_id, sha, verdict, record_json, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (repo_id, sha) DO NOTHING",
                (repo_id, sha, verdict, record_json, time.time()),
            )

    def get_scan(self, repo_id: str, sha: str) -> ScanRow | None:
        rows = self._read("SELECT * FROM scans WHERE repo_id = ? AND sha = ?", (repo_id, sha))
        return _row(ScanRow, rows[0]) if rows else None

    def latest_scans(self, limit: int = 50) -> list[ScanRow]:
        rows = self._read("SELECT * FROM scans ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,))
        return [_row(ScanRow, row) for row in rows]

    def all_scans(self) -> list[ScanRow]:
        return [_row(ScanRow, row) for row in self._read("SELECT * FROM scans ORDER BY created_at, rowid")]

    def record_skip(self, *, repo_id: str, sha: str, skip: SkipRepo) -> None:
        """Records why (repo_id, sha) is not scanned; a later call for the same pair replaces the reason."""
        with self._write("record a skip") as conn:
            self._insert_skip(conn, repo_id, sha, skip, time.time())

    @staticmethod
    def _insert_skip(conn: sqlite3.Connection, repo_id: str, sha: str, skip: SkipRepo, now: float) -> None:
        conn.execute(
            "INSERT INTO skips (repo_id, sha, code, reason, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (repo_id, sha) DO UPDATE SET code = excluded.code, reason = excluded.reason",
            (repo_id, sha, skip.code.value, skip.reason, now),
        )

    def skips(self) -> list[SkipRow]:
        return [_row(SkipRow, row) for row in self._read("SELECT * FROM skips ORDER BY created_at, rowid")]

    # -- discussion threads, posts, badge PRs -------------------------------------------------------------

    def get_thread(self, repo_id: str) -> ThreadRow | None:
        rows = self._read("SELECT * FROM threads WHERE repo_id = ?", (repo_id,))
        return _row(ThreadRow, rows[0]) if rows else None

    def record_thread(self, *, repo_id: str, discussion_num: int) -> None:
        """Records the bot's (one) thread on a repo as open, replacing an earlier one."""
        with self._write("record a thread") as conn:
            conn.execute(
                "INSERT INTO threads (repo_id, discussion_num, status, created_at) VALUES (?, ?, 'open', ?)"
                " ON CONFLICT (repo_id) DO UPDATE SET discussion_num = excluded.discussion_num, status = 'open',"
                " created_at = excluded.created_at",
                (repo_id, discussion_num, time.time()),
            )

    def mark_thread_closed(self, repo_id: str) -> None:
        with self._write("close a thread") as conn:
            conn.execute("UPDATE threads SET status = 'closed' WHERE repo_id = ?", (repo_id,))

    def record_post(self, *, repo_id: str, sha: str, discussion_num: int, comment_id: str | None, kind: str) -> bool:
        """Records a post; False when a post of this kind for (repo_id, sha) was already recorded."""
        with self._write("record a post") as conn:
            cursor = conn.execute(
                "INSERT INTO posts (repo_id, sha, kind, discussion_num, comment_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (repo_id, sha, kind) DO NOTHING",
                (repo_id, sha, kind, discussion_num, comment_id, time.time()),
            )
            return cursor.rowcount == 1

    def has_post(self, repo_id: str, sha: str, kind: str = "report") -> bool:
        rows = self._read("SELECT 1 FROM posts WHERE repo_id = ? AND sha = ? AND kind = ?", (repo_id, sha, kind))
        return bool(rows)

    def posts(self, repo_id: str) -> list[PostRow]:
        rows = self._read("SELECT * FROM posts WHERE repo_id = ? ORDER BY created_at, rowid", (repo_id,))
        return [_row(PostRow, row) for row in rows]

    def record_badge_pr(self, *, repo_id: str, sha: str, pr_num: int) -> None:
        with self._write("record a badge PR") as conn:
            conn.execute(
                "INSERT INTO badge_prs (repo_id, sha, pr_num, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (repo_id, sha) DO UPDATE SET pr_num = excluded.pr_num",
                (repo_id, sha, pr_num, time.time()),
            )

    def get_badge_pr(self, repo_id: str) -> int | None:
        """The most recent badge PR opened on the repo, if any."""
        rows = self._read(
            "SELECT pr_num FROM badge_prs WHERE repo_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1", (repo_id,)
        )
        return rows[0]["pr_num"] if rows else None

    # -- opt-out and seen events --------------------------------------------------------------------------

    def set_opt_out(self, repo_id: str, opted_out: bool) -> None:
        with self._write("record an opt-out") as conn:
            if opted_out:
                conn.execute(
                    "INSERT OR REPLACE INTO opt_outs (repo_id, updated_at) VALUES (?, ?)", (repo_id, time.time())
                )
            else:
                conn.execute("DELETE FROM opt_outs WHERE repo_id = ?", (repo_id,))

    def is_opted_out(self, repo_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM opt_outs WHERE repo_id = ?", (repo_id,)))

    # -- anchor pins ----------------------------------------------------------------------------------------

    def anchor_pin(self, anchor_id: str) -> AnchorPin | None:
        rows = self._read("SELECT * FROM anchor_pins WHERE anchor_id = ?", (anchor_id,))
        return _row(AnchorPin, rows[0]) if rows else None

    def pin_anchor(self, anchor_id: str, sha: str) -> AnchorPin:
        """Pins `anchor_id` to `sha` unless it is pinned already; returns the pin in force (the first one)."""
        with self._write("pin an anchor") as conn:
            conn.execute("INSERT INTO anchor_pins (anchor_id, sha, pinned_at) VALUES (?, ?, ?)"
                         " ON CONFLICT (anchor_id) DO NOTHING", (anchor_id, sha, time.time()))
        pin = self.anchor_pin(anchor_id)
        assert pin is not None
        return pin

    def anchor_pins(self) -> list[AnchorPin]:
        return [_row(AnchorPin, row) for row in self._read("SELECT * FROM anchor_pins ORDER BY anchor_id")]

    def repos_posted_in(self) -> list[str]:
        """Every repo where the bot has a thread, a post or a badge PR: where mentions are polled for."""
        rows = self._read("SELECT repo_id FROM threads UNION SELECT repo_id FROM posts"
                          " UNION SELECT repo_id FROM badge_prs ORDER BY repo_id")
        return [row["repo_id"] for row in rows]

    # -- mention events ------------------------------------------------------------------------------------

    def record_mention(
        self, *, event_id: str, repo_id: str, discussion_num: int, comment_id: str, author: str | None,
        author_id: str | None, text: str, is_pull_request: bool, source: str, now: float | None = None,
    ) -> bool:  # fmt: skip
        """Stores a mention to be handled (pending, due at once), in one transaction; False when its event id is
        stored already, whatever its status (a redelivery, or a comment both the webhook and polling saw)."""
        now = time.time() if now is None else now
        with self._write("record a mention") as conn:
            cursor = conn.execute(
                "INSERT INTO mention_events (event_id, repo_id, discussion_num, comment_id, author, author_id, text,"
                " is_pull_request, source, status, next_attempt_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                (event_id, repo_id, discussion_num, comment_id, author, author_id, text, int(is_pull_request), source,
                 now, now, now),
            )
            return cursor.rowcount == 1

    def knows_mention(self, event_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM mention_events WHERE event_id = ?", (event_id,)))

    def get_mention(self, event_id: str) -> MentionRow | None:
        rows = self._read("SELECT * FROM mention_events WHERE event_id = ?", (event_id,))
        return _row(MentionRow, rows[0]) if rows else None

    def mention_events(self, status: MentionStatus | None = None) -> list[MentionRow]:
        if status is None:
            rows = self._read("SELECT * FROM mention_events ORDER BY created_at, rowid")
        else:
            rows = self._read("SELECT * FROM mention_events WHERE status = ? ORDER BY created_at, rowid",
                              (status.value,))  # fmt: skip
        return [_row(MentionRow, row) for row in rows]

    def mention_counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in MentionStatus}
        for row in self._read("SELECT status, COUNT(*) AS n FROM mention_events GROUP BY status"):
            counts[row["status"]] = row["n"]
        return counts

    def lease_mention(
        self, *, owner: str, lease_seconds: float, max_attempts: int, now: float | None = None
    ) -> MentionRow | None:
        """Atomically takes the next mention to handle: pending and due, or running with an expired lease (its
        processor died), oldest first. One whose lease expired on its last attempt is failed instead."""
        now = time.time() if now is None else now
        with self._write("lease a mention") as conn:
            conn.execute(
                "UPDATE mention_events SET status = 'failed', last_error = COALESCE(last_error || '; ', '') ||"
                " 'lease expired on the last attempt (the processor stopped)', lease_owner = NULL,"
                " lease_expires_at = NULL, updated_at = ? WHERE status = 'running' AND lease_expires_at <= ?"
                " AND attempts >= ?",
                (now, now, max_attempts),
            )
            row = conn.execute(
                "SELECT event_id FROM mention_events WHERE (status = 'pending' AND next_attempt_at <= ?)"
                " OR (status = 'running' AND lease_expires_at <= ?) ORDER BY next_attempt_at, rowid LIMIT 1",
                (now, now),
            ).fetchone()
            if row is None:
                return None
            leased = conn.execute(
                "UPDATE mention_events SET status = 'running', lease_owner = ?, lease_expires_at = ?,"
                " attempts = attempts + 1, updated_at = ? WHERE event_id = ? RETURNING *",
                (owner, now + lease_seconds, now, row["event_id"]),
            ).fetchone()
            return _row(MentionRow, leased)

    def finish_mention(self, event_id: str, *, owner: str, outcome: str) -> bool:
        """Marks a leased mention handled with what was done; False (no change) when `owner` lost its lease."""
        return self._settle_mention(event_id, owner, status="handled", outcome=outcome, error=None, retry_at=None)

    def fail_mention(self, event_id: str, *, owner: str, error: str, retry_at: float | None) -> bool:
        """Puts a leased mention back for `retry_at`, or (None) fails it for good; False when the lease was lost."""
        if retry_at is None:
            return self._settle_mention(event_id, owner, status="failed", outcome=None, error=error, retry_at=None)
        return self._settle_mention(event_id, owner, status="pending", outcome=None, error=error, retry_at=retry_at)

    def _settle_mention(self, event_id: str, owner: str, *, status: str, outcome: str | None, error: str | None,
                        retry_at: float | None) -> bool:  # fmt: skip
        with self._write("update a mention") as conn:
            cursor = conn.execute(
                "UPDATE mention_events SET status = ?, outcome = COALESCE(?, outcome),"
                " last_error = COALESCE(?, last_error), next_attempt_at = COALESCE(?, next_attempt_at),"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                " WHERE event_id = ? AND status = 'running' AND lease_owner = ?",
                (status, outcome, error, retry_at, time.time(), event_id, owner),
            )
            return cursor.rowcount == 1

    def next_mention_due(self) -> float | None:
        """When the next mention becomes takeable (a pending one's next attempt, a running one's lease end)."""
        rows = self._read("SELECT MIN(CASE status WHEN 'pending' THEN next_attempt_at ELSE lease_expires_at END) AS due"
                          " FROM mention_events WHERE status IN ('pending', 'running')")
        return rows[0]["due"] if rows else None
