"""What a web process does with its turns when it is told to stop, so a deploy interrupts no
reply that could finish and leaves none waiting for its lease.

gunicorn's hooks call it (``gunicorn.conf.py``): SIGTERM (a deploy, a node stop) starts
``begin``; the worker has stopped accepting connections by then and serves the open ones.

1. Every turn of this process (streams whose client is connected, turns carried on after their
   client left, Compare's) may run to its end for ``DRAIN_SECONDS``.
2. Readers here of turns generated elsewhere end at once, without a terminal event: their
   client resumes on another process with its ``Last-Event-ID`` (``turns.follow``).
3. At the deadline the turns still running are cut short as ``interrupted``
   (``Running.interrupt_all``): each stores the text that arrived, which is at least what its
   readers were shown, and publishes its terminal event, so every reader, here or on another
   node, ends at once and the page offers Retry. A turn that cannot store itself in
   ``STORE_SECONDS`` (its thread is stuck) is stored here from the broker's text
   (``replies.interrupt``).

``finish`` (gunicorn's ``worker_exit``) waits for all of it before the process exits;
``interrupt_now`` (SIGINT/SIGQUIT, gunicorn's quick shutdown) skips the wait of step 1.
``DRAIN_SECONDS`` must leave gunicorn's ``graceful_timeout`` time for step 3, or the master's
SIGKILL comes first and the lease sweep ends the rest (with the broker's text as well).
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask

from app.chat import replies
from app.transactions import rollback_quietly

log = logging.getLogger(__name__)

STORE_SECONDS = 5.0  # how long cut-short turns have to store themselves before we do it


class Drain:
    def __init__(self) -> None:
        self.started = threading.Event()  # readers of other processes' turns look at it
        self.done = threading.Event()
        self._lock = threading.Lock()


def begin(app: Flask) -> None:
    """Start draining in a background thread (a greenlet under gevent); idempotent. Safe to
    call from a signal handler: it only starts the thread."""
    drain: Drain = app.extensions["turn_drain"]
    with drain._lock:
        if drain.started.is_set():
            return
        drain.started.set()
    threading.Thread(target=_run, args=(app, drain), name="turn-drain", daemon=True).start()


def _run(app: Flask, drain: Drain) -> None:
    try:
        running = app.extensions["running_turns"]
        seconds = float(app.config["DRAIN_SECONDS"])
        started, count = time.monotonic(), len(running)
        if count:
            log.info("draining: %d reply(s) may finish within %.0f s", count, seconds)
        if running.wait(seconds):
            if count:
                log.info("drained in %.1f s", time.monotonic() - started)
            return
        _interrupt(app)
    except Exception:
        log.exception("the drain failed; the lease sweep will end what is left")
    finally:
        drain.done.set()


def _interrupt(app: Flask) -> None:
    running = app.extensions["running_turns"]
    ids = running.interrupt_all()
    log.warning("drain time over: reply(s) %s interrupted with the text they had", ids)
    if running.wait(STORE_SECONDS):
        return
    for reply_id in running.ids():  # stuck: store it from the broker's text ourselves
        with app.app_context():
            try:
                replies.interrupt(reply_id, app)
            except replies.DB_DOWN as exc:
                rollback_quietly()
                log.error("reply %s: not stored at shutdown (%s); its lease ends it", reply_id, exc)


def interrupt_now(app: Flask, timeout: float = 2.0) -> None:
    """A quick shutdown: cut every turn short at once and give them ``timeout`` to store."""
    drain: Drain = app.extensions["turn_drain"]
    drain.started.set()
    running = app.extensions["running_turns"]
    try:
        if len(running):
            ids = running.interrupt_all()
            log.warning("quick shutdown: reply(s) %s interrupted with the text they had", ids)
            running.wait(timeout)
    finally:
        drain.done.set()


def draining(app: Flask) -> bool:
    """Whether this process is shutting down."""
    return app.extensions["turn_drain"].started.is_set()


def finish(app: Flask, timeout: float) -> bool:
    """Wait up to ``timeout`` for the drain to end (gunicorn's ``worker_exit``); True if it
    did (or never started)."""
    drain: Drain = app.extensions["turn_drain"]
    if not drain.started.is_set():
        return True
    return drain.done.wait(timeout)


def init_app(app: Flask) -> None:
    app.extensions["turn_drain"] = Drain()
