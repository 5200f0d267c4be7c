"""Benchmarks of the detector on the zoo (results are written to docs/benchmarks.md)."""
