"""Production server settings (``make serve``).

Chat replies are long-lived streams that spend their time waiting on the provider, so a worker
must hold many open requests: ``gthread`` workers with many threads each. Sync workers would
serve one stream at a time and kill any stream longer than ``timeout``. Counts are set from the
environment; the defaults suit a 2-core machine (see docs/benchmarks.md when measured).
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "64"))
# gthread heartbeats from the main thread, so a long stream in a worker thread is not killed;
# timeout only catches a stuck worker process.
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = "-"
