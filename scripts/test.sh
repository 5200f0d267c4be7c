#!/usr/bin/env bash
# The test suite: installs what it needs, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/install_browser.sh   # Debian chromium for the report-page browser tests
bash scripts/install_debian.sh /usr/bin/redis-server redis-server   # the Celery workers' broker (tests/test_celery_workers.py)
export HF_HUB_DISABLE_XET=1 HF_HUB_DISABLE_TELEMETRY=1
# Train the suite's zoo up front (a no-op once cache/ holds it), one model at a time on every core.
.venv/bin/python tests/zoo_plan.py
exec .venv/bin/python -m pytest "$@"
