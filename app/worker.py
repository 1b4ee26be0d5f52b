"""``flask worker``: the process that runs background jobs (``app/jobs.py``).

Huey's consumer with ``QUEUE_WORKERS`` threads takes jobs from the queue (``QUEUE_URL``), and
a ticker queues the ``chores`` job every ``MAINTENANCE_SECONDS`` (Huey's own periodic tasks
are checked once a minute, too coarse for the reply lease sweep). Run one per machine beside
the web server (Procfile ``worker``); several are fine: every job claims its row first.
SIGINT (Ctrl-C) lets running jobs end, SIGTERM stops at once (Huey's rules): a job cut short
is taken up again by the sweep once its lease is over.
"""

from __future__ import annotations

import logging
import threading
import time

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from app.jobs import jobs

log = logging.getLogger(__name__)


class _OncePerMinute(logging.Filter):
    """Huey's consumer logs a traceback for every failed poll (a few a second while Redis is
    away): keep one line a minute."""

    def __init__(self) -> None:
        super().__init__()
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(("Error reading from queue", "Error reading sched")):
            return True
        now = time.monotonic()
        if now - self._last < 60:
            return False
        self._last = now
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"job queue unreachable: {type(exc).__name__}: {exc} (retrying)"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


def _tick(app: Flask, stop: threading.Event) -> None:
    every = float(app.config["MAINTENANCE_SECONDS"])
    while every and not stop.wait(every):
        jobs(app).enqueue("chores")


@click.command("worker")
@with_appcontext
def worker_command() -> None:
    """Run background jobs (PDF extraction, OpenAI copies, titles, chores) until stopped."""
    app = current_app._get_current_object()
    queue = jobs(app)
    queue.in_process = False  # this process is the consumer
    logging.getLogger("huey").setLevel(logging.WARNING)  # not a line per job run
    logging.getLogger("huey.consumer").setLevel(logging.INFO)  # its start and stop
    quiet = _OncePerMinute()
    for name in ("huey.consumer.Worker", "huey.consumer.Scheduler"):
        logging.getLogger(name).addFilter(quiet)
    stop = threading.Event()
    threading.Thread(target=_tick, args=(app, stop), name="chores-ticker", daemon=True).start()
    log.info("worker started: queue=%s threads=%s", queue.url.split("@")[-1], queue.threads)
    consumer = queue.huey.create_consumer(
        workers=queue.threads,
        worker_type="thread",
        periodic=False,
        initial_delay=0.05,
        max_delay=0.5,  # how long an idle thread waits between polls of an SQLite queue
        check_worker_health=True,
    )
    try:
        consumer.run()
    finally:
        stop.set()


def init_app(app: Flask) -> None:
    app.cli.add_command(worker_command)
