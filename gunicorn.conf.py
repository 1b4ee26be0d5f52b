"""Production server settings (``make serve``), chosen by measurement (docs/benchmarks.md).

Chat replies are long-lived streams that spend their time waiting on the provider, so a worker
must hold many open requests. ``gevent`` workers do, with one greenlet per request: on 2 cores
they served 200 concurrent streams with less CPU per reply and more replies per second than
``gthread`` workers with 128 threads each (whose threads also cap a worker's open streams).
Psycopg 3 cooperates with gevent on its own (3.1.14+), and gunicorn patches the standard library
before the app is imported (so no ``preload_app``). Sync workers would serve one stream at a
time and kill any stream longer than ``timeout``.

Two workers per 2 cores: more gevent workers measured worse (more CPU per reply). Override with
``WEB_CONCURRENCY``, ``GUNICORN_WORKER_CLASS`` (``gthread`` with ``GUNICORN_THREADS``) and
``GUNICORN_WORKER_CONNECTIONS``.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gevent: open requests per worker; gthread: threads per worker (one stream each).
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
threads = int(os.environ.get("GUNICORN_THREADS", "128"))
# Both worker classes heartbeat while streams are open, so a long stream is not killed;
# timeout only catches a stuck worker process.
timeout = 60
graceful_timeout = 30
keepalive = 5
# No gunicorn access log: the app writes one line per request itself (``prompthub.access``,
# with the request id, the user and the duration); a second line per request only cost CPU.
accesslog = None
# Workers never run migrations: leave Flask-Migrate (Alembic, Mako) out of them (~11 MB each).
raw_env = ["DB_MIGRATE_COMMANDS=false"]


def post_worker_init(worker):
    """Each worker proves its file store works before it serves: a missing bucket or refused
    credentials stop the server at start with the reason (exit code 3, "Worker failed to
    boot"), instead of every upload answering 503 later. Here rather than in ``create_app``,
    which makes no network calls; ``flask files check-storage`` runs the same check."""
    import sys

    from app.storage.base import StorageConfigError, StorageError

    store = worker.wsgi.extensions["storage"]
    try:
        store.check()
    except StorageConfigError as exc:
        worker.log.error("file storage is not usable, not serving: %s", exc)
        sys.exit(3)  # gunicorn's WORKER_BOOT_ERROR: the master stops instead of respawning
    except StorageError as exc:
        # Unreachable for now (a network blip, the store restarting): serve; uploads and
        # downloads answer 503 until it is back, and /readyz reports it.
        worker.log.warning("file storage unreachable at start: %s", exc)
    else:
        worker.log.info("file storage: %s", store.describe())
