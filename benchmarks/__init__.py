"""gridops benchmarks: figures and ratios against baselines measured in the same run.

Run with `python -m benchmarks` (or `make bench`); not part of the test suite.
"""
