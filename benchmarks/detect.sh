#!/usr/bin/env bash
# The detector benchmark recorded in docs/benchmarks.md (zoo v2), in its two stages:
#
#   ./benchmarks/detect.sh calibrate [--families clip]   # build + scan the calibration seeds (3 1 2),
#                                                        # fit thresholds, ship them
#   ./benchmarks/detect.sh report [--families clip]      # only once the configuration is frozen: build +
#                                                        # scan the report seeds (1001-1004), write the page
#
# Per family and seed: one model of each of the nine attack kinds and benign fine-tunes of four
# kinds (drift-matched), seeds cycling over the family's three bases (docs/zoo.md). Models and
# scan records are cached under cache/, so an interrupted run resumes; the report stage refuses
# to run if the detector configuration changed since the calibration. On 2 CPU cores, one
# thread per process: ~1 h to build a family's 39 calibration models, ~2 h for its 71 report
# models, and about half a minute per scan (a GPU is used when present).
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-}"
case "$stage" in
  calibrate) shift; extra=(--calibration-seeds 3 1 2 --write-thresholds) ;;
  report) shift; extra=() ;;
  *) echo "usage: $0 calibrate|report [clip-audit bench detect options]" >&2; exit 4 ;;
esac
./scripts/bootstrap.sh
exec .venv/bin/clip-audit bench detect --stage "$stage" --threads 1 "${extra[@]}" "$@"
