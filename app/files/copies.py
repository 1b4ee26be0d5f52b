"""The OpenAI Files copy of a project file, off the request path: a ``copy`` job on the queue
(``app/jobs.py``) per file.

With ``OPENAI_API_KEY`` set, an upload is inserted ``sync_status = pending`` and, once its row
is committed (so a file refused by a quota is never copied), a ``copy`` job is queued
(``submit``); the upload answers at once with ``openai.status`` ``pending``. "Copy to OpenAI" /
"Retry the copy" (``request``) turn a ``local`` or ``failed`` file ``pending`` again, and the
job is queued. The job (``copy_file``), the same lease-and-guard pattern as the extraction:

1. **claims** the file: ``UPDATE files SET sync_claimed_at = now WHERE id = ? AND
   sync_status = 'pending' AND (sync_claimed_at IS NULL OR sync_claimed_at < now - lease)``;
   one row or none, so two runs never copy the same file at once;
2. streams the stored bytes to OpenAI (``providers/openai_files.py``), holding no database
   connection;
3. writes the outcome with ``UPDATE … WHERE id = ? AND sync_status = 'pending'``: ``synced``
   with what OpenAI answered, or ``failed`` with a reason a person can act on (OpenAI's error,
   the store's); never an error answered to anyone. A copy made for a file deleted meanwhile
   (the write changed nothing) is deleted again at OpenAI.

A file left ``pending`` by a worker that died mid-copy, or whose job never reached the queue,
is queued again by the **sweep** (a chore of ``app/maintenance.py``) once its lease is over
(``COPY_LEASE``). A run that died after OpenAI took the bytes leaves that copy behind (OpenAI's
Files API has no idempotency key): the next run makes the one the row names.

States (ARCHITECTURE.md, "OpenAI Files mirror"): local → pending (a key set later, "Copy to
OpenAI"); pending → synced | failed; failed → pending (a retry). ``synced`` is final.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import and_, or_, select, update

from app import jobs, llm, maintenance
from app.extensions import db
from app.models import StoredFile, SyncStatus
from app.models.base import utcnow
from app.providers.errors import ProviderError
from app.providers.openai_files import RemoteFile
from app.storage.base import ObjectMissing, StorageError

log = logging.getLogger(__name__)

COPY_LEASE = timedelta(minutes=10)  # the longest a copy may take, with room to store it
SWEEP_BATCH = 50


def submit(file_id: int) -> bool:
    """Queue the copy of a file just made ``pending`` (False: the queue is away; the sweep
    will)."""
    return jobs.enqueue("copy", file_id)


def request(file_id: int) -> bool:
    """Make a ``local`` or ``failed`` file ``pending`` again (committed); False when it was
    neither (synced, or a copy already pending). The caller queues the job (``submit``) once it
    has read what it answers, so the answer is the state the request left, not the job's."""
    changed = db.session.execute(
        update(StoredFile)
        .where(
            StoredFile.id == file_id,
            StoredFile.sync_status.in_((SyncStatus.LOCAL, SyncStatus.FAILED)),
        )
        .values(sync_status=SyncStatus.PENDING, sync_error=None, sync_claimed_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return bool(changed)


def copy_job(file_id: int) -> None:
    """The ``copy`` job."""
    copy_file(file_id)


def copy_file(file_id: int) -> bool:
    """Claim, copy and record one pending file. False when it was not ours to run (done
    already, deleted, or claimed by a live run elsewhere)."""
    now = utcnow()
    free = or_(StoredFile.sync_claimed_at.is_(None), StoredFile.sync_claimed_at < now - COPY_LEASE)
    claimed = db.session.execute(
        update(StoredFile)
        .where(
            StoredFile.id == file_id,
            StoredFile.sync_status == SyncStatus.PENDING,
            free,
        )
        .values(sync_claimed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    row = None
    if claimed:
        row = db.session.execute(
            select(
                StoredFile.project_id,
                StoredFile.stored_name,
                StoredFile.name,
                StoredFile.content_type,
            ).where(StoredFile.id == file_id)
        ).one_or_none()
    db.session.commit()  # the claim is visible; no connection is held while OpenAI answers
    if row is None:
        return False
    client = llm.openai_files()
    remote: RemoteFile | None = None
    if not client.configured:
        values = _failed("No OpenAI key is set now (OPENAI_API_KEY); set one and retry the copy.")
    else:
        try:
            opened = current_app.extensions["storage"].open(row.project_id, row.stored_name)
            with opened.file:  # streamed from the store into the multipart body
                remote = client.upload(
                    opened.file,
                    filename=row.name,
                    content_type=row.content_type,
                    purpose=current_app.config["OPENAI_FILE_PURPOSE"],
                )
        except ProviderError as exc:
            log.warning("OpenAI file upload failed for file %s: %r", file_id, exc)
            values = _failed(sync_failure(exc))
        except StorageError as exc:
            log.error("OpenAI copy of file %s: its stored bytes unreadable: %s", file_id, exc)
            values = _failed(_storage_failure(row.name, exc))
        else:
            values = {"sync_status": SyncStatus.SYNCED, "sync_error": None, **remote_values(remote)}
    changed = db.session.execute(
        update(StoredFile)
        .where(StoredFile.id == file_id, StoredFile.sync_status == SyncStatus.PENDING)
        .values(**values, sync_claimed_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if not changed and remote is not None:
        _drop_remote(remote.id)  # the file was deleted meanwhile (or another run stored first)
    return bool(changed)


def _drop_remote(remote_id: str) -> None:
    try:
        llm.openai_files().delete(remote_id)
    except ProviderError as exc:
        log.warning("OpenAI file %s left behind: %s", remote_id, exc.message)


def _failed(reason: str) -> dict:
    return {"sync_status": SyncStatus.FAILED, "sync_error": reason, **remote_values(None)}


def remote_values(remote: RemoteFile | None) -> dict:
    return {
        "openai_file_id": remote.id if remote else None,
        "openai_bytes": remote.bytes if remote else None,
        "openai_created_at": remote.created_at if remote else None,
        "openai_expires_at": remote.expires_at if remote else None,
        "openai_purpose": remote.purpose if remote else None,
        "openai_status": remote.status if remote else None,
    }


# What went wrong, for the person looking at the Files tab, by the kind of provider error; the
# provider's own reason follows (``ProviderError.message``).
_SYNC_FAILURES = {
    "auth": "OpenAI did not accept the API key (check OPENAI_API_KEY and OPENAI_BASE_URL).",
    "model_not_found": "OpenAI's Files endpoint was not found (check OPENAI_BASE_URL).",
    "rate_limited": "OpenAI is limiting requests right now; retry the copy in a minute.",
    "quota": "The OpenAI account is out of credit or quota.",
    "bad_request": "OpenAI refused this file.",
    "content_policy": "OpenAI refused this file.",
    "unavailable": "OpenAI had a problem on its side; retry the copy later.",
    "timeout": "OpenAI did not answer in time; retry the copy.",
    "connection": "PromptHub could not reach OpenAI; retry the copy.",
    "malformed": "OpenAI's answer could not be read; retry the copy.",
}


# Failures seen on our side of the wire: their message is ours (httpx's), not OpenAI's words.
_TRANSPORT_KINDS = {"timeout", "connection", "malformed"}


def sync_failure(exc: ProviderError) -> str:
    """A failed copy in words a user can act on, then the reason as it was given."""
    lead = _SYNC_FAILURES.get(exc.kind, "The copy to OpenAI failed.")
    source = "Details" if exc.kind in _TRANSPORT_KINDS else "OpenAI said"
    return f"{lead} {source}: {exc.message}"


def _storage_failure(name: str, exc: StorageError) -> str:
    if isinstance(exc, ObjectMissing):
        return f"The stored bytes of {name} are missing, so nothing could be copied."
    return "PromptHub could not read the file from its storage; retry the copy later."


def sweep(app: Flask) -> None:
    """The chore: queue a job for each pending copy nobody is running: never claimed for a
    while (its job never reached the queue), or its lease over (its run died)."""
    now = utcnow()
    grace = timedelta(seconds=float(app.config["MAINTENANCE_SECONDS"]) or 10)
    found = list(
        db.session.scalars(
            select(StoredFile.id)
            .where(
                StoredFile.sync_status == SyncStatus.PENDING,
                or_(
                    and_(
                        StoredFile.sync_claimed_at.is_(None),
                        StoredFile.created_at < now - grace,
                    ),
                    StoredFile.sync_claimed_at < now - COPY_LEASE,
                ),
            )
            .order_by(StoredFile.id)
            .limit(SWEEP_BATCH)
        )
    )
    db.session.commit()
    for file_id in found:
        if not submit(file_id):
            return


def init_app(app: Flask) -> None:
    jobs.register(app, "copy", copy_job)
    maintenance.register(app, "copy sweep", sweep)
