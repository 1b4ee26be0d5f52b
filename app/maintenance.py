"""Periodic chores, run as the ``chores`` job of the queue (``app/jobs.py``).

Features register chores (``register``) when the app is built: the lease sweep of replies whose
process died, the replay of replies spooled while the database was down, the sweep of file
extractions nobody is running. ``flask worker`` queues the ``chores`` job every
``MAINTENANCE_SECONDS``; with ``QUEUE_IN_PROCESS`` (the dev server, the test suite) a
``before_request`` hook queues it instead, at most that often per process. Every chore is an
idempotent, guarded ``UPDATE`` or a claim, so workers and nodes may run them at the same time;
one run at a time per process. ``0`` turns the schedule off (tests call ``run_now``).

A chore that fails because the database cannot be reached says so in one line when it starts
failing and once when it works again, not with a traceback on every run of the outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flask import Flask

from app import jobs
from app.transactions import DATABASE_AWAY

log = logging.getLogger(__name__)

Chore = Callable[[Flask], None]


class Maintenance:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.every = float(app.config["MAINTENANCE_SECONDS"])
        self.chores: list[tuple[str, Chore]] = []
        self._next = 0.0
        self._running = threading.Lock()
        self._waiting: set[str] = set()  # chores failing while the database is away

    def register(self, name: str, chore: Chore) -> None:
        self.chores.append((name, chore))

    def tick(self) -> None:
        now = time.monotonic()
        if not self.every or now < self._next:
            return
        self._next = now + self.every
        jobs.enqueue("chores")

    def run_now(self) -> None:
        """Run every chore in this thread (tests, ``flask maintenance``)."""
        with self._running:
            self._run()

    def run_job(self) -> None:
        """The ``chores`` job: every chore, unless a run is going on in this process."""
        if self._running.acquire(blocking=False):
            try:
                self._run()
            finally:
                self._running.release()

    def _run(self) -> None:
        for name, chore in self.chores:
            try:
                with self.app.app_context():
                    chore(self.app)
            except DATABASE_AWAY as exc:  # the next tick tries again
                if name not in self._waiting:
                    self._waiting.add(name)
                    orig = getattr(exc, "orig", None) or exc
                    log.warning(
                        "maintenance chore %s waits for the database: %s", name, type(orig).__name__
                    )
                continue
            except Exception:  # the next tick tries again
                log.exception("maintenance chore %s failed", name)
                continue
            if name in self._waiting:
                self._waiting.discard(name)
                log.info("maintenance chore %s runs again", name)


def init_app(app: Flask) -> None:
    maintenance = Maintenance(app)
    app.extensions["maintenance"] = maintenance
    jobs.register(app, "chores", maintenance.run_job)
    if app.config["QUEUE_IN_PROCESS"]:
        app.before_request(maintenance.tick)


def register(app: Flask, name: str, chore: Chore) -> None:
    app.extensions["maintenance"].register(name, chore)
