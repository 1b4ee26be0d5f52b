"""Background work: one job queue (Huey) for everything that runs off the request path.

A feature registers a job when the app is built (``register(app, "extraction", func)``) and
queues it with ``enqueue("extraction", *args)``; a **worker** takes it from the queue and runs
``func(*args)`` in an app context. Jobs today: ``extraction`` (one PDF in the sandbox,
``app/files/extraction.py``), ``copy`` (a file's copy to OpenAI Files,
``app/files/copies.py``), ``title`` (a conversation's title by the model,
``app/chat/titles.py``) and ``chores`` (the periodic chores of ``app/maintenance.py``).
Live chat turns are not jobs: they stream to a reader connected to the web process.

**Where the queue lives** (``QUEUE_URL``): unset, Redis when ``REDIS_URL`` is set, else an
SQLite file in ``instance/`` (``make run`` needs no other service); ``redis://…`` or
``sqlite:///path`` name one; ``memory://`` is a queue inside one process (the test suite's
default). Jobs are Huey messages of a job name and JSON-able arguments.

**Who runs the jobs.** ``flask worker`` (``app/worker.py``; Procfile ``worker``) runs Huey's
consumer with ``QUEUE_WORKERS`` threads and queues ``chores`` every ``MAINTENANCE_SECONDS``.
With ``QUEUE_IN_PROCESS`` (the default outside production) the web process runs jobs itself:
threads (greenlets under gevent) start when a job is queued and end when idle, as the old
per-feature threads did, so the dev server needs no second process.

**At least once, written once.** Huey removes a message when a worker takes it, so a job whose
worker dies is not retried by the queue: the database row is the record, the message only a
wake-up. Every job claims its row with a lease and writes with a guarded ``UPDATE``, and the
chores' sweeps queue again what a dead worker left (its lease over) or what never reached the
queue (``enqueue`` returns False when the queue cannot be reached: the caller's row stays
pending and the sweep queues it once the queue is back). A job that finds the database away
logs one warning and ends; its row is as it was, so the sweep queues it again too. Nothing is
lost; nothing is written twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from flask import Flask, current_app
from huey import MemoryHuey, RedisHuey, SqliteHuey
from huey.api import Huey

from app.transactions import DATABASE_AWAY, rollback_quietly

log = logging.getLogger(__name__)

IDLE_SECONDS = 5.0  # an in-process runner thread with nothing to do for this long ends
QUEUE_NAME = "prompthub"


def queue_url(config) -> str:
    """The queue's location: ``QUEUE_URL``, else Redis at ``REDIS_URL``, else the embedded
    SQLite file in the instance folder (``memory://`` under ``APP_ENV=testing``)."""
    if config.get("QUEUE_URL"):
        return config["QUEUE_URL"]
    if config.get("REDIS_URL"):
        return config["REDIS_URL"]
    if config.get("APP_ENV") == "testing":
        return "memory://"
    return f"sqlite:///{Path(config['INSTANCE_PATH']) / 'queue.db'}"


def make_huey(url: str) -> Huey:
    # results=False: jobs write their outcome to the database, nobody waits on a result.
    if url.startswith(("redis://", "rediss://", "unix://")):
        # A short socket timeout: an enqueue while Redis is away fails in about a second.
        import redis

        pool = redis.ConnectionPool.from_url(url, socket_timeout=5, socket_connect_timeout=1)
        return RedisHuey(QUEUE_NAME, connection_pool=pool, results=False)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(QUEUE_NAME, filename=str(path), results=False, timeout=10)
    if url == "memory://":
        return MemoryHuey(QUEUE_NAME, results=False)
    raise ValueError(f"QUEUE_URL must be redis://…, sqlite:///path or memory://, got {url!r}")


class Jobs:
    """One per app (``app.extensions["jobs"]``): the Huey instance, the registered jobs and,
    with ``QUEUE_IN_PROCESS``, the runner threads of this process."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.url = queue_url(app.config)
        self._huey: Huey | None = None  # built on first use: the factory opens no file
        self.in_process = bool(app.config["QUEUE_IN_PROCESS"])
        self.threads = max(1, int(app.config["QUEUE_WORKERS"]))
        self._jobs: dict[str, Callable] = {}  # name -> function, as registered
        self._tasks: dict[str, Callable] = {}  # name -> Huey task, once the queue is built
        self._lock = threading.Lock()
        self._running = 0  # in-process runner threads started and not ended
        self._executing = 0  # of those, the ones taking or running a job now
        self._runners: set[threading.Thread] = set()
        self._stopping = False  # shutdown(): runners take no more jobs, none is started
        self._away = False  # the last enqueue failed: say so once, and once when it works

    def register(self, name: str, func: Callable[..., object]) -> None:
        if self._huey is not None:
            raise RuntimeError(f"job {name}: register jobs while the app is built")
        self._jobs[name] = func

    @property
    def huey(self) -> Huey:
        with self._lock:
            if self._huey is None:
                huey = make_huey(self.url)
                for name, func in self._jobs.items():
                    self._tasks[name] = huey.task(name=name)(self._in_context(name, func))
                self._huey = huey
        return self._huey

    def _in_context(self, name: str, func: Callable[..., object]) -> Callable[..., object]:
        app = self.app

        def run(*args):
            with app.app_context():
                try:
                    return func(*args)
                except DATABASE_AWAY as exc:  # its row is still pending: a sweep queues it again
                    rollback_quietly()
                    orig = getattr(exc, "orig", None) or exc
                    log.warning("job %s waits for the database: %s", name, type(orig).__name__)
                    return None

        run.__name__ = name
        return run

    def enqueue(self, name: str, *args) -> bool:
        """Queue job ``name``; False (logged, never raised) when the queue cannot be reached:
        the caller's row stays as it is and a sweep queues it again later."""
        try:
            self.huey  # noqa: B018 (builds the queue and its tasks on first use)
            self._tasks[name](*args)
        except Exception as exc:  # redis.ConnectionError, sqlite3.OperationalError, …
            if not self._away:
                self._away = True
                log.warning("job queue unreachable (%s): %s waits for a sweep", exc, name)
            return False
        if self._away:
            self._away = False
            log.info("job queue reachable again")
        if self.in_process:
            self._wake()
        return True

    def pending(self) -> int:
        return self.huey.pending_count()

    def run_pending(self) -> int:
        """Run the queued jobs in this thread until the queue is empty (the tests, with
        ``QUEUE_IN_PROCESS`` off); returns how many ran."""
        ran = 0
        while (task := self.huey.dequeue()) is not None:
            try:
                self.huey.execute(task)
            except Exception:
                log.exception("job %s failed", task.name)
            ran += 1
        return ran

    # --- in-process runner (QUEUE_IN_PROCESS) ------------------------------------------------

    def _wake(self) -> None:
        with self._lock:
            if self._stopping or self._running >= self.threads:
                return
            self._running += 1
            runner = threading.Thread(target=self._run, name="jobs", daemon=True)
            self._runners.add(runner)
        runner.start()

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop this process's runner threads before its app's connections are closed: each
        finishes the job it is running (none is cut) and takes no other; jobs still queued stay
        in the queue for a worker or the next start (the sweep queues again what an in-memory
        queue loses). True when every runner ended within ``timeout``."""
        with self._lock:
            self._stopping = True
            runners = list(self._runners)
        deadline = time.monotonic() + timeout
        for runner in runners:
            runner.join(max(0.0, deadline - time.monotonic()))
        return not any(runner.is_alive() for runner in runners)

    def _run(self) -> None:
        idle_since = time.monotonic()
        try:
            while not self._stopping:
                with self._lock:
                    self._executing += 1  # from the take: a job taken is never "idle"
                try:
                    try:
                        task = self.huey.dequeue()
                    except Exception:
                        log.exception("job queue unreachable; this runner ends")
                        return
                    if task is not None:
                        try:
                            self.huey.execute(task)
                        except Exception:
                            log.exception("job %s failed", task.name)
                finally:
                    with self._lock:
                        self._executing -= 1
                if task is None:
                    if time.monotonic() - idle_since > IDLE_SECONDS:
                        break
                    time.sleep(0.05)
                    continue
                idle_since = time.monotonic()
        finally:
            with self._lock:
                self._running -= 1
                self._runners.discard(threading.current_thread())
        # A job queued while this thread was deciding to end found every slot taken.
        if self._pending_quietly():
            self._wake()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until this process's runners have no job queued or running (tests waiting for
        the work they queued); False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self._executing or (self._running and self._pending_quietly()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _pending_quietly(self) -> int:
        try:
            return self.huey.pending_count()
        except Exception:
            return 0


def jobs(app: Flask | None = None) -> Jobs:
    return (app or current_app).extensions["jobs"]


def register(app: Flask, name: str, func: Callable[..., object]) -> None:
    jobs(app).register(name, func)


def enqueue(name: str, *args) -> bool:
    return jobs().enqueue(name, *args)


def init_app(app: Flask) -> None:
    app.config.setdefault("INSTANCE_PATH", app.instance_path)
    app.extensions["jobs"] = Jobs(app)
