"""A worker process for tests/test_worker.py: `python worker_helpers.py DB MARKER_DIR LEASE_SECONDS [--burst]`.

Its handler appends "start <repo>" and "done <repo>" lines to MARKER_DIR/log. Jobs for repos named
"*/blocking*" wait, between the two lines, until MARKER_DIR/release exists, so the test can signal or kill
the process while a job is running.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from bot.settings import load_settings
from bot.state import Job, Store
from bot.worker import Worker


def append_marker(marker_dir: Path, line: str) -> None:
    with open(marker_dir / "log", "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def marker_lines(marker_dir: Path) -> list[str]:
    log = marker_dir / "log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def blocking_handler(marker_dir: Path) -> object:
    def handle(job: Job) -> None:
        append_marker(marker_dir, f"start {job.repo_id}")
        if job.repo_id.split("/")[1].startswith("blocking"):
            while not (marker_dir / "release").exists():
                time.sleep(0.02)
        append_marker(marker_dir, f"done {job.repo_id}")

    return handle


def main(argv: list[str]) -> int:
    db, marker_dir, lease = Path(argv[0]), Path(argv[1]), float(argv[2])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings(config_file=None, env={}, stored_token=lambda: None,
                             overrides={"lease_seconds": lease, "worker_idle_seconds": 0.05})  # fmt: skip
    store = Store(db)
    handler = blocking_handler(marker_dir)
    worker = Worker(store, settings, handler=handler, worker_id=f"sub-{marker_dir.name}")  # type: ignore[arg-type]
    try:
        worker.work(burst="--burst" in argv)
    finally:
        store.close()
    print(f"shutdown={worker.shutdown}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
