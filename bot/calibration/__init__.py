"""`clip-audit calibrate`: thresholds fitted on a registered base's own variants, stored with its registry entry.

inputs.py fetches the base (pinned to its commit) and the captions (a dataset pinned to its sha) through the
Hub boundary; run.py builds the variants (bot/zoo/base_variants.py), scans them and the base, and fits the
thresholds with the benchmark's fitting code (bot/bench/calibrate.py); bot/anchors/calibrations.py stores the
result, where every scan that chooses that base as its anchor finds it.
"""
