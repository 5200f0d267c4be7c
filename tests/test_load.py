"""benchmarks/load.py at its --quick size: `serve`, `watch` and `worker` as processes against the Hub emulator with
faults on (429s, 503 bursts, dropped connections, a stall, `serve` killed mid-burst). Checks that nothing is lost
or done twice; the timings it measures are docs/reliability.md's business, not this test's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_LIMIT_S = 900  # the script bounds its own wait for the bot (QUICK.deadline_s); this bounds a stuck start-up


def test_quick_load_with_faults_loses_nothing_and_does_nothing_twice(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "load.py"), "--quick",
                             "--workdir", str(tmp_path / "load"), "--json", str(report_path)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_LIMIT_S)  # fmt: skip
    assert report_path.is_file(), result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["problems"] == [], result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    plan = report["plan"]
    assert (plan["repos"], plan["events"], plan["faults"]) == (50, 40, True)
    assert report["repos_triaged"] == 50
    assert report["mentions"] == report["acks"] == 40  # each answered exactly once in its thread
    assert report["jobs"] and set(report["jobs"]) <= {"done", "skipped"}  # every job finished
    # the faults really happened, and the bot got through them by retrying
    assert all(report["faults_fired"].get(kind, 0) >= 1 for kind in ("429", "503", "drop"))
    assert report["mention_retries"] >= 1 and report["redelivered"] >= 1
    assert report["deliveries"]["failed"] == 0 and report["deliveries"]["pending"] == 0
