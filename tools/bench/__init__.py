"""The benchmark harness (``python -m tools.bench.harness``) and its load generator; the
benchmarks that run as tests, on the suite's fixtures, stay in ``tests/bench``."""
