"""Storage quotas: how much a user's files may take, in all their projects and in one project.

Three limits from the config: ``STORAGE_QUOTA_USER_MB`` (the bytes of every file in the user's
projects), ``STORAGE_QUOTA_PROJECT_MB`` (one project's bytes) and ``STORAGE_QUOTA_PROJECT_FILES``
(one project's files). A file that would cross one is refused with a 413
``storage_quota_exceeded`` whose ``quota`` member names it; nothing of it is stored, and so it
is never copied to OpenAI either (the copy is made from a stored row). The same bytes uploaded
again into a project cost nothing: they are not stored twice.

Usage is computed, not counted: one aggregate query over the files table, scoped to the owner
(``SUM(size)``, ``COUNT(*)``). A counter column would need a migration and would have to be kept
right by every path that adds or removes rows (deletes, project cascades, the storage
migration, restores) or drift; the sum is always right, and at a few hundred files per project
it costs well under a millisecond with the ``projects.owner_id`` index and the files'
``(project_id, …)`` unique indexes.

**Races.** Two uploads of one user could both read the usage, both fit and both insert. So the
check that decides (``reserve``) runs in the transaction that inserts the row, after taking a
write lock on the owner's ``users`` row (a no-op ``UPDATE``: a row lock on PostgreSQL, the
database's write lock on SQLite; one statement for both, no dialect switch). Concurrent uploads
of one user are therefore checked one after the other, each seeing the rows the others
committed, and the quota is never crossed. The lock is held for the sum and the insert only
(milliseconds), never while bytes are copied; other users never wait on it. An earlier
``check`` without the lock, before the bytes are put in the store, refuses a file that plainly
does not fit without storing anything; when a race is lost between the two, the row is refused
and its object deleted (``services.store_upload``).

``refusal`` is the pure core: plain values in, the error (or None) out.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import case, func, select, update

from app.errors import PayloadTooLarge
from app.extensions import db
from app.models import Project, StoredFile, User

MIB = 1024 * 1024


class QuotaExceeded(PayloadTooLarge):
    """A storage quota would be crossed; nothing was stored."""

    code = "storage_quota_exceeded"


@dataclass(frozen=True)
class Usage:
    bytes: int
    files: int


@dataclass(frozen=True)
class Quotas:
    user_bytes: int
    project_bytes: int
    project_files: int


@dataclass(frozen=True)
class StorageUsage:
    project: Usage
    user: Usage  # every project of the owner, this one included
    quotas: Quotas


def quotas() -> Quotas:
    config = current_app.config
    return Quotas(
        user_bytes=config["STORAGE_QUOTA_USER_MB"] * MIB,
        project_bytes=config["STORAGE_QUOTA_PROJECT_MB"] * MIB,
        project_files=config["STORAGE_QUOTA_PROJECT_FILES"],
    )


def usage(*, owner_id: int, project_id: int) -> StorageUsage:
    """What the owner's files take, in all their projects and in ``project_id``: one query."""
    in_project = StoredFile.project_id == project_id
    row = db.session.execute(
        select(
            func.count(StoredFile.id),
            func.coalesce(func.sum(StoredFile.size), 0),
            func.count(case((in_project, StoredFile.id))),
            func.coalesce(func.sum(case((in_project, StoredFile.size), else_=0)), 0),
        )
        .join(Project, Project.id == StoredFile.project_id)
        .where(Project.owner_id == owner_id)
    ).one()
    user_files, user_bytes, project_files, project_bytes = (int(v) for v in row)
    return StorageUsage(
        project=Usage(bytes=project_bytes, files=project_files),
        user=Usage(bytes=user_bytes, files=user_files),
        quotas=quotas(),
    )


def refusal(current: StorageUsage, *, name: str, size: int) -> QuotaExceeded | None:
    """Why a new file ``name`` of ``size`` bytes may not be stored, or None if it fits."""
    limits = current.quotas
    if current.project.files + 1 > limits.project_files:
        return _exceeded(
            "project_files",
            f"{name} was not stored: this project already has {current.project.files:,} files, "
            f"its limit of {limits.project_files:,}. Delete files to make room.",
            used=current.project.files,
            limit=limits.project_files,
            adding=1,
        )
    if current.project.bytes + size > limits.project_bytes:
        return _exceeded(
            "project_bytes",
            f"{name} ({human_size(size)}) was not stored: it would take this project past its "
            f"storage quota of {human_size(limits.project_bytes)} "
            f"({human_size(current.project.bytes)} used). Delete files to make room.",
            used=current.project.bytes,
            limit=limits.project_bytes,
            adding=size,
        )
    if current.user.bytes + size > limits.user_bytes:
        return _exceeded(
            "user_bytes",
            f"{name} ({human_size(size)}) was not stored: it would take your files past your "
            f"storage quota of {human_size(limits.user_bytes)} "
            f"({human_size(current.user.bytes)} used across your projects). "
            "Delete files to make room.",
            used=current.user.bytes,
            limit=limits.user_bytes,
            adding=size,
        )
    return None


def _exceeded(quota: str, message: str, *, used: int, limit: int, adding: int) -> QuotaExceeded:
    return QuotaExceeded(
        message,
        fields={"file": message},
        extra={"quota": {"name": quota, "limit": limit, "used": used, "adding": adding}},
    )


def check(*, owner_id: int, project_id: int, name: str, size: int) -> None:
    """Refuse a file that does not fit now (no lock: the early check, before storing)."""
    refused = refusal(usage(owner_id=owner_id, project_id=project_id), name=name, size=size)
    if refused is not None:
        raise refused


def reserve(*, owner_id: int, project_id: int, name: str, size: int) -> None:
    """Lock the owner's quota for this transaction, then refuse a file that does not fit.

    Call it in the transaction that inserts the file's row, right before the insert; the lock
    ends with that transaction's commit or rollback."""
    db.session.execute(
        update(User)
        .where(User.id == owner_id)
        .values(name=User.name)  # changes nothing; takes the lock
        .execution_options(synchronize_session=False)
    )
    check(owner_id=owner_id, project_id=project_id, name=name, size=size)


def human_size(count: int) -> str:
    """Bytes in the units the settings use (1 MB = 1,048,576 bytes, as ``MAX_UPLOAD_MB``)."""
    if count < 1024:
        return f"{count:,} bytes" if count != 1 else "1 byte"
    for unit, scale in (("KB", 1024), ("MB", MIB), ("GB", 1024 * MIB)):
        value = count / scale
        if value < 1024 or unit == "GB":
            text = f"{value:,.1f}"
            return f"{text.removesuffix('.0')} {unit}"
    raise AssertionError("unreachable")
