"""The bot's persistent state: a versioned SQLite schema and the Store that reads and writes it."""

from .schema import (
    LATEST_VERSION,
    MIGRATIONS,
    Job,
    JobStatus,
    MentionRow,
    MentionStatus,
    Migration,
    PostRow,
    RepoRow,
    ScanRow,
    SkipRow,
    ThreadRow,
)
from .store import Store

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Job",
    "JobStatus",
    "MentionRow",
    "MentionStatus",
    "Migration",
    "PostRow",
    "RepoRow",
    "ScanRow",
    "SkipRow",
    "Store",
    "ThreadRow",
]
