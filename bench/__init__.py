"""Benchmarks: `python -m bench.<name>` prints a table with a baseline row measured in the same run."""
