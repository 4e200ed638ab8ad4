"""Benchmarks: each bench_*.py module has main(), which prints a table of
ratios against a baseline measured in the same run.  Run all: python -m bench."""
