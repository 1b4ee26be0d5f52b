"""Benchmarks need PostgreSQL (``BENCH_PG``) and the ``bench`` extra (psutil, py-spy); they are
collected only with ``-m bench`` (``make bench``)."""
