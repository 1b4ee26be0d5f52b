"""Text extraction off the request path: a per-process queue, fair across users, feeding the
extraction sandbox.

An upload whose type needs a parser (PDF) is stored with ``text_status = pending`` and its id
handed to ``submit``; the upload request returns at once. A worker thread (a greenlet under
gunicorn's gevent worker) takes ids from the queue and, for each one:

1. **claims** it: ``UPDATE files SET text_claimed_at = now WHERE id = ? AND text_status =
   'pending' AND (text_claimed_at IS NULL OR text_claimed_at < now - lease)``. One row or none,
   on both databases, so two processes never run the same file at once;
2. runs ``sandbox.py`` in a child process with CPU, memory and wall-clock limits, holding no
   database connection meanwhile. The child reads a local path: the stored file itself on the
   local store, a temporary copy in ``STORAGE_STAGING_DIR`` on S3 (removed afterwards). Bytes
   that are missing from the store end as ``failed``; a store that cannot be reached leaves the
   file ``pending`` for the sweep to retry once the lease is over;
3. writes the outcome with ``UPDATE … WHERE id = ? AND text_status = 'pending'``, so a run that
   comes twice (a retry after a lost lease) changes nothing the second time.

**Fair share.** Files wait per owner (the project's ``owner_id``) in a ``FairQueue``: owners are
served in turn and one owner runs at most ``EXTRACT_PER_USER`` files at once, so a user who
uploads many slow PDFs delays their own files, not everyone's. ``EXTRACT_WORKERS`` children at
most run per process, each at ``EXTRACT_NICE`` (``sandbox.py``): together the bounded share of
the CPU that extraction may take (ARCHITECTURE.md, "File text extraction").

A file left ``pending`` by a process that died is found by the **sweep**, a chore of
``app/maintenance.py`` (every ``MAINTENANCE_SECONDS``): it queues pending files whose lease is
over or that were never claimed, each owner's oldest first, into the same fair queue. Threads
start on demand (``EXTRACT_WORKERS`` at most per process) and end when idle, so an idle process
runs none.

States (ARCHITECTURE.md, "File text extraction"): pending → ok | empty | failed | too_complex.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from flask import Flask, current_app
from sqlalchemy import func, or_, select, update

from app import maintenance
from app.extensions import db
from app.files.extract import MAX_TEXT_CHARS, Extracted
from app.files.fairqueue import FairQueue
from app.models import Project, StoredFile, TextStatus
from app.models.base import utcnow
from app.storage.base import ObjectMissing

log = logging.getLogger(__name__)

SANDBOX = Path(__file__).with_name("sandbox.py")
IDLE_SECONDS = 5.0  # a worker thread with nothing to do for this long ends
SWEEP_BATCH = 50


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int
    memory_mb: int
    wall_seconds: float
    max_pages: int
    nice: int = 10
    max_chars: int = MAX_TEXT_CHARS

    @classmethod
    def from_config(cls, config) -> Limits:
        return cls(
            cpu_seconds=config["EXTRACT_CPU_SECONDS"],
            memory_mb=config["EXTRACT_MEMORY_MB"],
            wall_seconds=config["EXTRACT_WALL_SECONDS"],
            max_pages=config["EXTRACT_MAX_PAGES"],
            nice=config["EXTRACT_NICE"],
        )

    @property
    def lease(self) -> timedelta:
        """How long a claim holds: the longest a run can take, plus room to store its result."""
        return timedelta(seconds=self.wall_seconds + 30)


# --- the sandbox -----------------------------------------------------------------------------


def run_sandbox(path: Path, limits: Limits) -> Extracted:
    """Extract one PDF in a child process within ``limits``; never raises for the file's sake."""
    job = {
        "path": str(path),
        "cpu_seconds": limits.cpu_seconds,
        "memory_mb": limits.memory_mb,
        "max_pages": limits.max_pages,
        "max_chars": limits.max_chars,
        "nice": limits.nice,
    }
    too_complex = f"Too complex to extract within the limits ({limits.cpu_seconds} s of CPU, "
    too_complex += f"{limits.memory_mb} MB, {limits.wall_seconds:g} s)."
    try:
        proc = subprocess.run(  # noqa: S603 (our own interpreter and script, no shell)
            [sys.executable, "-I", str(SANDBOX), json.dumps(job)],
            capture_output=True,
            timeout=limits.wall_seconds,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:  # run() has killed it
        log.warning("extraction of %s passed %ss of wall time", path.name, limits.wall_seconds)
        return Extracted(TextStatus.TOO_COMPLEX, note=too_complex)
    if proc.returncode < 0:  # a signal: SIGXCPU at the CPU limit, SIGKILL past the hard one
        log.warning("extraction of %s ended by signal %s", path.name, -proc.returncode)
        return Extracted(TextStatus.TOO_COMPLEX, note=too_complex)
    try:
        result = json.loads(proc.stdout)
        status = TextStatus(result["status"])
    except (ValueError, KeyError, TypeError):
        log.warning(
            "extraction of %s failed (exit %s): %s",
            path.name,
            proc.returncode,
            proc.stderr[-500:].decode("utf-8", "replace"),
        )
        return Extracted(TextStatus.FAILED, note="The PDF could not be read.")
    if status == TextStatus.TOO_COMPLEX:
        return Extracted(status, note=too_complex)
    return Extracted(
        status, text=result.get("text"), pages=result.get("pages"), note=result.get("note")
    )


# --- one job ---------------------------------------------------------------------------------


def extract_file(file_id: int, limits: Limits) -> bool:
    """Claim, extract and store one pending file. False when it was not ours to run (done
    already, deleted, or claimed by a live run elsewhere)."""
    now = utcnow()
    claimed = db.session.execute(
        update(StoredFile)
        .where(
            StoredFile.id == file_id,
            StoredFile.text_status == TextStatus.PENDING,
            or_(
                StoredFile.text_claimed_at.is_(None),
                StoredFile.text_claimed_at < now - limits.lease,
            ),
        )
        .values(text_claimed_at=now)
    ).rowcount
    row = None
    if claimed:
        row = db.session.execute(
            select(StoredFile.project_id, StoredFile.stored_name).where(StoredFile.id == file_id)
        ).one_or_none()
    db.session.commit()  # the claim is visible; no connection is held while the child runs
    if row is None:
        return False
    started = time.monotonic()
    try:
        with current_app.extensions["storage"].local_copy(row.project_id, row.stored_name) as path:
            result = run_sandbox(path, limits)
    except ObjectMissing as exc:
        log.error("extraction of file %s: its stored bytes are missing: %s", file_id, exc)
        result = Extracted(TextStatus.FAILED, note="The stored bytes of this file are missing.")
    db.session.execute(
        update(StoredFile)
        .where(StoredFile.id == file_id, StoredFile.text_status == TextStatus.PENDING)
        .values(
            text_status=result.status,
            text=result.text,
            text_chars=result.chars,
            text_pages=result.pages,
            text_note=result.note,
            text_claimed_at=None,
        )
    )
    db.session.commit()
    log.info(
        "file text extracted: file=%s status=%s chars=%s seconds=%.1f",
        file_id,
        result.status,
        result.chars,
        time.monotonic() - started,
    )
    return True


def stale_pending(limits: Limits, *, grace: timedelta) -> list[tuple[int, int]]:
    """``(owner_id, file_id)`` of pending files nobody is running: never claimed for ``grace``
    (their process died before its queue reached them), or claimed longer ago than the lease.
    At most ``SWEEP_BATCH``, taken in rounds (every owner's oldest, then every owner's second,
    …), so one owner's backlog never keeps another owner's files out of a sweep."""
    now = utcnow()
    stale = (
        select(
            StoredFile.id,
            Project.owner_id,
            func.row_number()
            .over(partition_by=Project.owner_id, order_by=StoredFile.id)
            .label("round"),
        )
        .join(Project, Project.id == StoredFile.project_id)
        .where(
            StoredFile.text_status == TextStatus.PENDING,
            or_(
                (StoredFile.text_claimed_at.is_(None)) & (StoredFile.created_at < now - grace),
                StoredFile.text_claimed_at < now - limits.lease,
            ),
        )
        .subquery()
    )
    rows = db.session.execute(
        select(stale.c.owner_id, stale.c.id)
        .order_by(stale.c["round"], stale.c.id)
        .limit(SWEEP_BATCH)
    ).all()
    db.session.commit()
    return [(owner_id, file_id) for owner_id, file_id in rows]


# --- the per-process queue -------------------------------------------------------------------


class Extractor:
    """One per app (``app.extensions["extractor"]``): a ``FairQueue`` of file ids by owner and
    up to ``EXTRACT_WORKERS`` threads that run them, started on demand and ended when idle."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.workers = max(1, int(app.config["EXTRACT_WORKERS"]))
        self.sweep_every = float(app.config["MAINTENANCE_SECONDS"])
        self._jobs = FairQueue(per_owner=int(app.config["EXTRACT_PER_USER"]))
        self._cond = threading.Condition()
        self._threads = 0  # started and not ended
        self._busy = 0  # of those, running a job (the others are starting or waiting for one)

    def submit(self, file_id: int, owner_id: int) -> None:
        self._put([(owner_id, file_id)])

    def sweep(self) -> None:
        """Queue the pending files nobody is running (see ``stale_pending``)."""
        limits = Limits.from_config(self.app.config)
        grace = timedelta(seconds=self.sweep_every or limits.wall_seconds)
        self._put(stale_pending(limits, grace=grace))

    def _put(self, jobs: list[tuple[int, int]]) -> None:
        with self._cond:
            if not sum(self._jobs.put(owner, file_id) for owner, file_id in jobs):
                return
            self._cond.notify_all()
            # Threads without a job take what they may; start more only for the rest.
            idle = self._threads - self._busy
            start = min(self.workers - self._threads, self._jobs.ready() - idle)
            self._threads += max(0, start)
        for _ in range(start):
            threading.Thread(target=self._work, name="extractor", daemon=True).start()

    def _work(self) -> None:
        job = None
        try:
            while True:
                with self._cond:
                    if job is not None:
                        self._finish(job)
                        job = None
                    job = self._next_job()
                    if job is None:  # ends under the lock: a later _put sees its slot free
                        self._threads -= 1
                        return
                    self._busy += 1
                try:
                    with self.app.app_context():
                        extract_file(job[1], Limits.from_config(self.app.config))
                except Exception:
                    log.exception("extraction of file %s failed; the sweep will retry it", job[1])
        except BaseException:  # killed (GreenletExit at shutdown): give the slot back
            with self._cond:
                if job is not None:
                    self._finish(job)
                self._threads -= 1
            raise

    def _finish(self, job: tuple[int, int]) -> None:
        self._jobs.done(*job)
        self._busy -= 1
        self._cond.notify_all()  # its owner's next file may run now

    def _next_job(self) -> tuple[int, int] | None:
        """The next job this thread may take, waiting up to ``IDLE_SECONDS`` for one (with the
        lock held, released while waiting)."""
        deadline = time.monotonic() + IDLE_SECONDS
        while (job := self._jobs.take()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._cond.wait(remaining)
        return job


def extractor() -> Extractor:
    return current_app.extensions["extractor"]


def init_app(app: Flask) -> None:
    app.extensions["extractor"] = Extractor(app)
    maintenance.register(app, "extraction sweep", lambda app: app.extensions["extractor"].sweep())
