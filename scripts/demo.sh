#!/usr/bin/env bash
# The main job: the whole bot end to end against the bundled Hub emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_DISABLE_XET=1 HF_HUB_DISABLE_TELEMETRY=1
exec .venv/bin/clip-audit demo "$@"
