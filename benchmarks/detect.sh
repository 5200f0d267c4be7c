#!/usr/bin/env bash
# The detector benchmark recorded in docs/benchmarks.md: per family, build the zoo
# (3 calibration seeds, 10 report seeds = 20 backdoored + 20 benign models, plus the clean
# base), scan every model, fit thresholds on the calibration seeds, report on the others.
#
#   ./benchmarks/detect.sh                      # all three families, one after another
#   ./benchmarks/detect.sh --families siglip    # one family (families can run in parallel
#                                               # processes: each writes its own result file)
#
# Models and scan records are cached under cache/, so an interrupted run resumes.
# About 1 h per family on 2 CPU cores (zoo training included); a GPU is used when present.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/clip-audit bench detect --calibration-seeds 3 --report-seeds 10 --write-thresholds "$@"
