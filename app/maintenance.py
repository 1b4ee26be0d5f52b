"""Periodic chores of every web process, woken by requests instead of a scheduler.

Features register chores (``register``) when the app is built: the lease sweep of replies whose
process died, the replay of replies spooled while the database was down, the sweep of file
extractions nobody is running. A ``before_request`` hook checks the clock (cheap); once every
``MAINTENANCE_SECONDS`` it runs all chores in a short-lived background thread (a greenlet under
gevent), one run at a time per process. Every chore is an idempotent, guarded ``UPDATE`` or a
claim, so processes and nodes may run them at the same time. ``0`` turns the hook off (tests
call ``run_now``).

A process that serves no requests runs no chores, and needs none: any other process (or the
next request here) does them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flask import Flask

log = logging.getLogger(__name__)

Chore = Callable[[Flask], None]


class Maintenance:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.every = float(app.config["MAINTENANCE_SECONDS"])
        self.chores: list[tuple[str, Chore]] = []
        self._next = 0.0
        self._running = threading.Lock()

    def register(self, name: str, chore: Chore) -> None:
        self.chores.append((name, chore))

    def tick(self) -> None:
        now = time.monotonic()
        if not self.every or now < self._next:
            return
        self._next = now + self.every
        if self._running.acquire(blocking=False):
            threading.Thread(target=self._run_locked, name="maintenance", daemon=True).start()

    def run_now(self) -> None:
        """Run every chore in this thread (tests, ``flask maintenance``)."""
        with self._running:
            self._run()

    def _run_locked(self) -> None:
        try:
            self._run()
        finally:
            self._running.release()

    def _run(self) -> None:
        for name, chore in self.chores:
            try:
                with self.app.app_context():
                    chore(self.app)
            except Exception:  # the next tick tries again
                log.exception("maintenance chore %s failed", name)


def init_app(app: Flask) -> None:
    maintenance = Maintenance(app)
    app.extensions["maintenance"] = maintenance
    app.before_request(maintenance.tick)


def register(app: Flask, name: str, chore: Chore) -> None:
    app.extensions["maintenance"].register(name, chore)
