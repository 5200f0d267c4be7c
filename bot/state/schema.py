"""The state database's data model: its schema, as an ordered list of migrations recorded in a
`schema_version` table, and the typed rows the Store returns.

To change the schema, append a migration; never edit one that has shipped. Opening a database written by a
newer version of the bot (a version past the last migration here) is refused rather than guessed at.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass

from bot.errors import SkipReason, StoreError
from bot.scan_record import ScanRecord


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        """
        CREATE TABLE repos (
            repo_id TEXT PRIMARY KEY,
            sha TEXT NOT NULL,
            last_modified TEXT,
            family TEXT,
            first_seen_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE cursors (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            repo_id TEXT NOT NULL,
            sha TEXT NOT NULL,
            revision TEXT,
            reason TEXT NOT NULL,
            requested_by TEXT,
            discussion_num INTEGER,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_run_at REAL NOT NULL,
            last_error TEXT,
            lease_owner TEXT,
            lease_expires_at REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (repo_id, sha)
        );
        CREATE INDEX jobs_ready ON jobs (status, next_run_at);
        CREATE TABLE scans (
            repo_id TEXT NOT NULL,
            sha TEXT NOT NULL,
            verdict TEXT NOT NULL,
            record_json TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (repo_id, sha)
        );
        CREATE INDEX scans_recent ON scans (created_at);
        CREATE TABLE skips (
            repo_id TEXT NOT NULL,
            sha TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (repo_id, sha)
        );
        CREATE TABLE threads (
            repo_id TEXT PRIMARY KEY,
            discussion_num INTEGER NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE posts (
            repo_id TEXT NOT NULL,
            sha TEXT NOT NULL,
            kind TEXT NOT NULL,
            discussion_num INTEGER NOT NULL,
            comment_id TEXT,
            created_at REAL NOT NULL,
            PRIMARY KEY (repo_id, sha, kind)
        );
        CREATE TABLE badge_prs (
            repo_id TEXT NOT NULL,
            sha TEXT NOT NULL,
            pr_num INTEGER NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (repo_id, sha)
        );
        CREATE TABLE opt_outs (
            repo_id TEXT PRIMARY KEY,
            updated_at REAL NOT NULL
        );
        CREATE TABLE seen_events (
            event_id TEXT PRIMARY KEY,
            seen_at REAL NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "skips carry their SkipReason code in a column of its own",
        """
        ALTER TABLE skips ADD COLUMN code TEXT NOT NULL DEFAULT '';
        UPDATE skips SET code = CASE WHEN instr(reason, ':') > 0
                                     THEN trim(substr(reason, 1, instr(reason, ':') - 1)) ELSE '' END
        """,
    ),
    Migration(
        3,
        "anchor pins: the commit a registered base without a reviewed sha was first fetched at",
        """
        CREATE TABLE anchor_pins (
            anchor_id TEXT PRIMARY KEY,
            sha TEXT NOT NULL,
            pinned_at REAL NOT NULL
        )
        """,
    ),
    Migration(
        4,
        "mention events: each mention a webhook delivered or polling found, kept until it is answered or given up;"
        " they replace seen_events, whose ids are carried over as handled",
        """
        CREATE TABLE mention_events (
            event_id TEXT PRIMARY KEY,
            repo_id TEXT NOT NULL,
            discussion_num INTEGER NOT NULL,
            comment_id TEXT NOT NULL,
            author TEXT,
            author_id TEXT,
            text TEXT NOT NULL,
            is_pull_request INTEGER NOT NULL,
            source TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT,
            outcome TEXT,
            lease_owner TEXT,
            lease_expires_at REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX mention_events_ready ON mention_events (status, next_attempt_at);
        INSERT INTO mention_events (event_id, repo_id, discussion_num, comment_id, text, is_pull_request, source,
                                    status, next_attempt_at, outcome, created_at, updated_at)
            SELECT event_id, '', 0, event_id, '', 0, 'seen-events', 'handled', seen_at,
                   'handled before mention events were stored', seen_at, seen_at FROM seen_events;
        DROP TABLE seen_events
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


# -- rows ------------------------------------------------------------------------------------------------


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Job:
    id: int
    repo_id: str
    sha: str
    revision: str | None       # the ref that was asked for (e.g. "main"); `sha` is what gets scanned
    reason: str                # "new-upload" | "new-revision" | "mention" | ...
    requested_by: str | None   # Hub user who asked (mentions); None for the watcher
    discussion_num: int | None  # where the request was made, to answer there
    status: JobStatus
    attempts: int              # leases taken so far (a lease is one try)
    next_run_at: float
    last_error: str | None
    lease_owner: str | None
    lease_expires_at: float | None
    created_at: float


class MentionStatus(str, enum.Enum):
    PENDING = "pending"  # to be handled when next_attempt_at comes (a new event, or one waiting for a retry)
    RUNNING = "running"  # a processor holds its lease; an expired lease makes it takeable again
    HANDLED = "handled"  # answered, or nothing to answer (the outcome says which)
    FAILED = "failed"    # given up: a permanent error, or every attempt used (last_error says why)


@dataclass(frozen=True)
class MentionRow:
    event_id: str              # the comment's Hub id: the same comment has the same id from either source
    repo_id: str
    discussion_num: int
    comment_id: str
    author: str | None         # Hub user name; None when the source gave only an id (webhooks)
    author_id: str | None
    text: str
    is_pull_request: bool
    source: str                # "webhook" | "poll"
    status: MentionStatus
    attempts: int              # leases taken so far (a lease is one try)
    next_attempt_at: float
    last_error: str | None
    outcome: str | None        # what handling it did ("answered: scan-queued", "ignored: ...")
    lease_owner: str | None
    lease_expires_at: float | None
    created_at: float
    updated_at: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", MentionStatus(self.status))
        object.__setattr__(self, "is_pull_request", bool(self.is_pull_request))


@dataclass(frozen=True)
class RepoRow:
    repo_id: str
    sha: str
    last_modified: str | None
    family: str | None
    first_seen_at: float
    updated_at: float


@dataclass(frozen=True)
class ScanRow:
    repo_id: str
    sha: str
    verdict: str          # a bot.scan_record.Verdict value
    record_json: str      # ScanRecord.to_json()
    created_at: float

    def record(self) -> ScanRecord:
        return ScanRecord.from_json(self.record_json)


@dataclass(frozen=True)
class SkipRow:
    repo_id: str
    sha: str
    reason: str          # code and detail, as shown to people
    created_at: float
    code: str            # a SkipReason value ("" for a reason older than the code column that named none)

    @property
    def skip_reason(self) -> SkipReason | None:
        try:
            return SkipReason(self.code)
        except ValueError:
            return None


class ThreadStatus(str, enum.Enum):
    OPEN = "open"
    CLOSED = "closed"  # someone closed the bot's thread: it is never reopened


@dataclass(frozen=True)
class ThreadRow:
    repo_id: str
    discussion_num: int
    status: ThreadStatus
    created_at: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", ThreadStatus(self.status))


@dataclass(frozen=True)
class AnchorPin:
    anchor_id: str
    sha: str
    pinned_at: float


@dataclass(frozen=True)
class PostRow:
    repo_id: str
    sha: str
    kind: str
    discussion_num: int
    comment_id: str | None
    created_at: float


def current_version(conn: sqlite3.Connection) -> int:
    """0 for a fresh database."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(conn: sqlite3.Connection, *, db_name: str) -> int:
    """Brings the database to LATEST_VERSION in one transaction; returns the version it had before.

    The connection must be in autocommit mode (isolation_level=None): the transaction is managed here.

    Raises:
        StoreError: the database was written by a newer version of the bot.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        before = current_version(conn)
        if before > LATEST_VERSION:
            raise StoreError(
                f"{db_name} has schema version {before}, newer than this bot understands ({LATEST_VERSION}); "
                "upgrade clip-audit-bot or point it at another state database"
            )
        for migration in MIGRATIONS:
            if migration.version > before:
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (migration.version,))
        conn.execute("COMMIT")
        return before
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT the surrounding transaction; run statements one by one instead.
    return [statement.strip() for statement in script.split(";") if statement.strip()]
