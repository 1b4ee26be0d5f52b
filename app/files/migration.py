"""Copying stored files from the local directory to another store (``flask files
migrate-storage``), checked against the sha256 each row recorded at upload.

Per file, in id order:

1. The target already has an object of the row's size whose recorded sha256 (user metadata
   written by every ``put``) is the row's: **skipped**, it was copied and checked before. This
   is what makes a run resumable: an interrupted run leaves whole objects (an S3 object appears
   only once its upload completed) and a rerun goes on after them without copying them again.
2. The local file is missing: **missing**. Its sha256 is not the row's: **mismatched** (the
   local copy is damaged; nothing is copied).
3. Otherwise it is put into the target, then read back and hashed: equal to the row's, it is
   **copied**; otherwise the object is deleted again and the file **failed**.

The local files are never deleted or changed: once every file is copied (or skipped) and the
app runs on the new store, removing ``UPLOAD_DIR`` is the operator's decision. A store that
cannot be reached stops the run (``StoreUnavailable``); run it again later. No Flask here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from app.storage.base import CHUNK, Store
from app.storage.local import LocalStore

OUTCOMES = ("copied", "skipped", "missing", "mismatched", "failed")


@dataclass(frozen=True)
class FileRef:
    id: int
    project_id: int
    stored_name: str
    size: int
    sha256: str


@dataclass
class Report:
    done: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in OUTCOMES})

    def add(self, outcome: str, file: FileRef) -> None:
        self.done[outcome].append(file.id)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.done.items()}

    @property
    def ok(self) -> bool:
        return not (self.done["missing"] or self.done["mismatched"] or self.done["failed"])


def _sha256_of(store: Store, file: FileRef) -> str:
    opened = store.open(file.project_id, file.stored_name)
    digest = hashlib.sha256()
    with opened.file:
        for chunk in opened.chunks(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def migrate_one(file: FileRef, *, source: LocalStore, target: Store) -> str:
    """Copy one file if needed; returns its outcome (one of ``OUTCOMES``)."""
    there = target.head(file.project_id, file.stored_name)
    if there is not None and there.size == file.size and there.sha256 == file.sha256:
        return "skipped"
    if source.head(file.project_id, file.stored_name) is None:
        return "missing"
    if _sha256_of(source, file) != file.sha256:
        return "mismatched"
    target.put(
        file.project_id, file.stored_name, source.path(file.project_id, file.stored_name),
        sha256=file.sha256,
    )  # fmt: skip
    if _sha256_of(target, file) != file.sha256:
        target.delete(file.project_id, file.stored_name)
        return "failed"
    return "copied"


def migrate(
    files: Iterable[FileRef],
    *,
    source: LocalStore,
    target: Store,
    progress: Callable[[str, FileRef], None] = lambda outcome, file: None,
) -> Report:
    """Every file through ``migrate_one``; ``StoreUnavailable`` stops the run."""
    if target.kind == "local":
        raise ValueError("the target is the local directory: set STORAGE_URL to the new store")
    report = Report()
    for file in files:
        outcome = migrate_one(file, source=source, target=target)
        report.add(outcome, file)
        progress(outcome, file)
    return report
