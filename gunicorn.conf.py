"""Production server settings (``make serve``), chosen by measurement (docs/benchmarks.md).

Chat replies are long-lived streams that spend their time waiting on the provider, so a worker
must hold many open requests. ``gevent`` workers do, with one greenlet per request: on 2 cores
they served 200 concurrent streams with less CPU per reply and more replies per second than
``gthread`` workers with 128 threads each (whose threads also cap a worker's open streams).
Psycopg 3 cooperates with gevent on its own (3.1.14+), and gunicorn patches the standard library
before the app is imported (so no ``preload_app``). Sync workers would serve one stream at a
time and kill any stream longer than ``timeout``.

On SIGTERM (a deploy, a node stop) each worker stops accepting, lets its replies finish for
``DRAIN_SECONDS`` and stores the rest as interrupted (``app/chat/drain.py``, hooked in below):
``graceful_timeout`` must be longer, with room to store them. Restart a node rather than
``SIGHUP`` it (docs/deploy.md "Deploying without interruptions").

Two workers per 2 cores: more gevent workers measured worse (more CPU per reply). Override with
``WEB_CONCURRENCY``, ``GUNICORN_WORKER_CLASS`` (``gthread`` with ``GUNICORN_THREADS``) and
``GUNICORN_WORKER_CONNECTIONS``.
"""

import contextlib
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
# gunicorn 25+ opens a control socket for ``gunicornc`` by default, at one path per user
# ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl): every gunicorn of that user (two nodes on one
# machine, a test server) shares the path and each start deletes the last one's. Off unless
# ``GUNICORN_CONTROL_SOCKET`` names a path of this server's own.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET") or "gunicorn.ctl"
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
# Workers never run migrations: leave Flask-Migrate (Alembic, Mako) out of them (~11 MB each).
raw_env = ["DB_MIGRATE_COMMANDS=false"]


def post_worker_init(worker):
    _check_storage(worker)
    _drain_on_sigterm(worker)


def _drain_on_sigterm(worker):
    """SIGTERM still ends the worker as gunicorn does (it stops accepting and serves the open
    connections); first it starts the drain of its turns, which ends those connections in time."""
    import signal

    from app.chat import drain

    app = worker.wsgi
    limit = worker.cfg.graceful_timeout - 3
    if app.config["DRAIN_SECONDS"] > limit:
        worker.log.warning(
            "DRAIN_SECONDS %s is not below graceful_timeout %s less 3 s to store; using %s",
            app.config["DRAIN_SECONDS"], worker.cfg.graceful_timeout, limit,
        )  # fmt: skip
        app.config["DRAIN_SECONDS"] = max(limit, 0)
    gunicorns = signal.getsignal(signal.SIGTERM)
    begin = drain.begin
    if "gevent" in worker.cfg.worker_class_str:
        # gevent runs signal handlers in its event loop, where nothing may block (starting a
        # thread waits for it): start the drain from a greenlet of its own, as gunicorn's
        # gevent worker does for SIGQUIT.
        import gevent

        def begin(app):
            gevent.spawn(drain.begin, app)

    def on_sigterm(signum, frame):
        begin(app)
        if callable(gunicorns):
            gunicorns(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def worker_int(worker):
    """SIGINT or SIGQUIT (a quick shutdown): no drain, but every reply is stored as interrupted
    with its text and its readers told, before the worker exits."""
    app = _app(worker)
    if app is not None:
        from app.chat import drain

        drain.interrupt_now(app)


def worker_exit(server, worker):
    """The worker's connections are closed; its detached turns may still run: wait for the
    drain (bounded by what is left of graceful_timeout, after which the master kills us)."""
    import os

    app = _app(worker)
    if worker.pid != os.getpid() or app is None:
        return  # called in the master when it reaps a worker, or the app never loaded
    from app.chat import drain

    drain.finish(app, timeout=max(worker.cfg.graceful_timeout - 1, 1))


def _app(worker):
    """The worker's Flask app, once loaded (None in the master, or before it loaded)."""
    app = getattr(worker, "wsgi", None)
    return app if "turn_drain" in getattr(app, "extensions", {}) else None


def _check_storage(worker):
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


# --- metrics (app/metrics.py): gunicorn's multi-process mode of prometheus-client -------------
# Each worker keeps its metric values in files in PROMETHEUS_MULTIPROC_DIR; /metrics adds them
# up. One directory per node (the default is per bind address, relative to the working
# directory, the project's root, so `make cluster`'s two nodes in one folder keep apart),
# emptied when the server starts (values of an earlier run would be counted again) and when it
# stops. Set in the master (``on_starting``), so every worker inherits it before it imports
# prometheus-client, which reads it once, at import.
_METRICS_DIR = os.path.abspath(
    os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    or os.path.join("instance", "metrics", bind.replace(":", "-").replace("/", "_"))
)


def on_starting(server):
    """Before any worker: the node's metrics directory, empty."""
    import glob

    os.makedirs(_METRICS_DIR, exist_ok=True)
    for stale in glob.glob(os.path.join(_METRICS_DIR, "*.db")):
        os.remove(stale)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _METRICS_DIR
    server.log.info("metrics: per-worker values in %s", _METRICS_DIR)


def on_exit(server):
    """The server stops: its values go with it (the next start would empty them anyway), so
    servers on passing ports (tests, benchmarks) leave no folders behind."""
    import glob

    for stale in glob.glob(os.path.join(_METRICS_DIR, "*.db")):
        os.remove(stale)
    with contextlib.suppress(OSError):  # not empty: someone else's files; leave them
        os.rmdir(_METRICS_DIR)


def child_exit(server, worker):
    """A worker ended (restart, kill, deploy): its live gauges (turns, readers) leave the sum;
    its counters stay, as counters must."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _METRICS_DIR)
