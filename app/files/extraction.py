"""Text extraction off the request path: an ``extraction`` job on the queue (``app/jobs.py``)
per file, fair across users, feeding the extraction sandbox.

An upload whose type needs a parser (PDF) is stored with ``text_status = pending`` and an
``extraction`` job queued (``submit``); the upload request returns at once. A worker (``flask
worker``, or the web process itself with ``QUEUE_IN_PROCESS``) runs the job, which:

1. **claims** the fairest file that may run (``claim_next``): ``UPDATE files SET
   text_claimed_at = now WHERE id = ? AND text_status = 'pending' AND (text_claimed_at IS NULL
   OR text_claimed_at < now - lease)``. One row or none, on both databases, so two workers
   never run the same file at once;
2. runs ``sandbox.py`` in a child process with CPU, memory and wall-clock limits, holding no
   database connection meanwhile. The child reads a local path: the stored file itself on the
   local store, a temporary copy in ``STORAGE_STAGING_DIR`` on S3 (removed afterwards). Bytes
   that are missing from the store end as ``failed``; a store that cannot be reached leaves the
   file ``pending`` for the sweep to retry once the lease is over;
3. writes the outcome with ``UPDATE … WHERE id = ? AND text_status = 'pending'``, so a run that
   comes twice (a retry after a lost lease, a worker killed mid-job) changes nothing the
   second time; then queues the next job while claimable files remain.

**Fair share.** The job does not name its file: it takes, of the owners (the project's
``owner_id``) with a claimable file and fewer than ``EXTRACT_PER_USER`` running, the one served
least recently (their latest ``text_claimed_at``), and that owner's oldest file. So a user who
uploads many slow PDFs delays their own files, not everyone's, on every worker and node at
once (the count and the claim hold the owner's row lock). ``EXTRACT_WORKERS`` children at most
run per process, each at ``EXTRACT_NICE`` (``sandbox.py``): together the bounded share of the
CPU that extraction may take (docs/files.md, "File text extraction").

A file left ``pending`` by a worker that died, or whose job never reached the queue (the queue
was away), is found by the **sweep**, a chore of ``app/maintenance.py`` (every
``MAINTENANCE_SECONDS``): it queues a job for each pending file whose lease is over or that was
never claimed.

States (docs/files.md, "File text extraction"): pending → ok | empty | failed | too_complex.
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
from sqlalchemy import case, func, or_, select, update

from app import jobs, maintenance
from app.extensions import db
from app.files.extract import MAX_TEXT_CHARS, Extracted
from app.models import Project, StoredFile, TextStatus, User
from app.models.base import utcnow
from app.storage.base import ObjectMissing

log = logging.getLogger(__name__)

SANDBOX = Path(__file__).with_name("sandbox.py")
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


def extract_file(file_id: int, limits: Limits, *, claimed: bool = False) -> bool:
    """Claim (unless ``claimed`` by ``claim_next``), extract and store one pending file. False
    when it was not ours to run (done already, deleted, or claimed by a live run elsewhere)."""
    now = utcnow()
    if not claimed:
        claimed = bool(
            db.session.execute(
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
        )
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
            text_note=result.note,  # text_claimed_at stays: when its owner was last served
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


# --- the job: the fairest file next ----------------------------------------------------------


def claim_next(limits: Limits, per_owner: int) -> int | None:
    """Claim the file to run next, fairly, or None when none may run now. Of the owners with a
    claimable file (pending, never claimed or its lease over) and fewer than ``per_owner``
    files running (pending, claimed within the lease), the one served least recently (their
    latest claim; never served first) gives their oldest claimable file. The count and the
    claim run under the owner's write lock (a no-op ``UPDATE`` of the ``users`` row, as the
    quota does), so the cap holds across threads, processes and nodes."""
    now = utcnow()
    live = now - limits.lease
    claimable = (StoredFile.text_status == TextStatus.PENDING) & or_(
        StoredFile.text_claimed_at.is_(None), StoredFile.text_claimed_at < live
    )
    running = (StoredFile.text_status == TextStatus.PENDING) & (StoredFile.text_claimed_at >= live)
    first = func.min(case((claimable, StoredFile.id)))
    waiting = (
        select(Project.owner_id)
        .join(StoredFile, StoredFile.project_id == Project.id)
        .where(claimable)
        .distinct()
    )
    owners = db.session.execute(
        select(
            Project.owner_id,
            first.label("first"),
            func.count(case((running, 1))).label("running"),
            func.max(StoredFile.text_claimed_at).label("served"),
        )
        .join(Project, Project.id == StoredFile.project_id)
        .where(Project.owner_id.in_(waiting))
        .group_by(Project.owner_id)
    ).all()
    db.session.commit()
    order = sorted(
        (o for o in owners if o.first is not None and o.running < per_owner),
        key=lambda o: (o.served is not None, str(o.served or ""), o.first),
    )
    for owner in order:
        db.session.execute(update(User).where(User.id == owner.owner_id).values(name=User.name))
        busy = db.session.scalar(
            select(func.count())
            .select_from(StoredFile)
            .join(Project, Project.id == StoredFile.project_id)
            .where(Project.owner_id == owner.owner_id, running)
        )
        file_id = db.session.scalar(
            select(StoredFile.id)
            .join(Project, Project.id == StoredFile.project_id)
            .where(Project.owner_id == owner.owner_id, claimable)
            .order_by(StoredFile.id)
            .limit(1)
        )
        claimed = 0
        if busy < per_owner and file_id is not None:
            # The claim's time is taken under the owner's lock, not when this run began: runs
            # that waited for the lock then stamp in the order they claimed, which is the order
            # "served least recently" must see.
            claimed = db.session.execute(
                update(StoredFile)
                .where(StoredFile.id == file_id, claimable)
                .values(text_claimed_at=utcnow())
            ).rowcount
        db.session.commit()
        if claimed:
            return file_id
    return None


class _Slots:
    """``EXTRACT_WORKERS`` sandboxes at most per process (taken without waiting)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0

    def take(self, limit: int) -> bool:
        with self._lock:
            if self.running >= limit:
                return False
            self.running += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.running -= 1


_slots = _Slots()


def extraction_job() -> None:
    """The ``extraction`` job, queued once per uploaded PDF and per file a sweep finds: run
    the fairest claimable file (``claim_next``), then queue the next job while claimable files
    remain. A job that finds every slot of this process busy, or every waiting owner at their
    cap, ends at once: a run going on queues the next job when it ends."""
    config = current_app.config
    if not _slots.take(int(config["EXTRACT_WORKERS"])):
        return
    try:
        limits = Limits.from_config(config)
        file_id = claim_next(limits, int(config["EXTRACT_PER_USER"]))
        if file_id is None:
            return
        extract_file(file_id, limits, claimed=True)
    finally:
        _slots.give()
    if _claimable():
        jobs.enqueue("extraction")


def _claimable() -> bool:
    live = utcnow() - Limits.from_config(current_app.config).lease
    found = db.session.scalar(
        select(StoredFile.id)
        .where(
            StoredFile.text_status == TextStatus.PENDING,
            or_(StoredFile.text_claimed_at.is_(None), StoredFile.text_claimed_at < live),
        )
        .limit(1)
    )
    db.session.commit()
    return found is not None


def extraction_counts() -> tuple[int, int]:
    """``(waiting, running)``: pending files not running, and running (claimed within the
    lease), on every worker (``/metrics``)."""
    live = utcnow() - Limits.from_config(current_app.config).lease
    running = StoredFile.text_claimed_at >= live
    waiting, busy = db.session.execute(
        select(
            func.count(case((running, None), else_=1)),
            func.count(case((running, 1))),
        ).where(StoredFile.text_status == TextStatus.PENDING)
    ).one()
    db.session.commit()
    return waiting, busy


def submit(file_id: int) -> bool:
    """Queue the extraction of a new pending file (False: the queue is away; the sweep will)."""
    log.debug("extraction queued for file %s", file_id)
    return jobs.enqueue("extraction")


def sweep(app: Flask) -> None:
    """The chore: queue a job for each pending file nobody is running (``stale_pending``)."""
    limits = Limits.from_config(app.config)
    every = float(app.config["MAINTENANCE_SECONDS"])
    grace = timedelta(seconds=every or limits.wall_seconds)
    for _owner, _file_id in stale_pending(limits, grace=grace):
        if not jobs.enqueue("extraction"):
            return


def init_app(app: Flask) -> None:
    jobs.register(app, "extraction", extraction_job)
    maintenance.register(app, "extraction sweep", sweep)
