"""Runnable tools beside the tests: the fake provider server, the cluster runner, the benchmark
harness and the module-map generator, with the process helpers they share (private PostgreSQL,
Redis and SeaweedFS, gunicorn and worker launchers, PDF builders). Tests import them; they import
nothing from ``tests``. Not part of the installed package."""
