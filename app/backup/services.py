"""Making a backup and restoring one, in order; no Flask (the commands hand in the parts).

Backup: the database snapshot first (it names the files), then the bytes of each of those files
read through the store (local folder or S3 alike) and checked against the row's sha256, then the
reply spool, then the manifest. Restore: the whole archive is extracted and checked first
(``archive.read_archive``), then the code's migrations (an archive from newer code is refused;
an older one is restored and migrated forward by the caller), then the target must be empty
unless ``force``, then files, spool and last the database: a restore cut short leaves no
database rows pointing at bytes that are not there yet.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from app.backup.archive import FORMAT, FORMAT_VERSION, MEMBER, ArchiveError, ArchiveWriter
from app.backup.archive import read_archive as _read_archive
from app.backup.databases import Database, DatabaseError, code_revisions
from app.storage.base import ObjectMissing, StorageError, Store

Echo = Callable[[str], None]


class RestoreRefused(Exception):
    """The archive is fine but restoring it here would be wrong; ``str()`` says why."""


class RestoreIncomplete(Exception):
    """Writing into the target failed part way; ``str()`` says what and how to go on."""


@dataclass
class BackupReport:
    manifest: dict[str, Any]

    @property
    def missing(self) -> list[int]:
        return self.manifest["files"]["missing"]

    @property
    def mismatched(self) -> list[int]:
        return self.manifest["files"]["mismatched"]


@dataclass
class RestoreReport:
    manifest: dict[str, Any]
    behind: bool  # the restored database is behind the code's migrations: upgrade it


def app_version() -> str:
    try:
        return metadata.version("prompthub")
    except metadata.PackageNotFoundError:
        return "unknown"


def spooled(spool_dir: Path) -> list[Path]:
    if not spool_dir.is_dir():
        return []
    return sorted(p for p in spool_dir.glob("*.json") if MEMBER.fullmatch(f"spool/{p.name}"))


def read_spool(spool_dir: Path) -> dict[str, bytes]:
    """The spool's entries by file name (small JSON files); one replayed meanwhile is skipped."""
    found = {}
    for entry in spooled(spool_dir):
        try:
            found[entry.name] = entry.read_bytes()
        except FileNotFoundError:
            continue
    return found


def make_backup(
    path: Path,
    *,
    database: Database,
    store: Store,
    spool_dir: Path,
    echo: Echo,
    with_files: bool = True,
) -> BackupReport:
    path = Path(path)
    if not path.parent.is_dir():
        raise ArchiveError(f"{path.parent} is not a folder")
    # The snapshot waits beside the archive: the operator chose that disk for its size.
    with tempfile.TemporaryDirectory(prefix=".prompthub-backup-", dir=path.parent) as work:
        snap_path = Path(work) / database.member
        # The spool is read before and after the snapshot: an entry replayed into the database
        # meanwhile is kept (replaying it again changes nothing), one spooled meanwhile is too.
        replies = read_spool(spool_dir)
        snap = database.snapshot(snap_path)
        replies.update(read_spool(spool_dir))
        echo(f"database: {database.describe()}, revision {snap.revision or 'none'}")
        missing: list[int] = []
        mismatched: list[int] = []
        total = 0
        with ArchiveWriter(path) as out:
            out.add_file(database.member, snap_path)
            snap_path.unlink()
            for row in snap.files if with_files else []:
                try:
                    opened = store.open(row.project_id, row.stored_name)
                except ObjectMissing:
                    missing.append(row.id)
                    continue
                with opened.file:
                    entry = out.add_stream(
                        f"files/{row.project_id}/{row.stored_name}", opened.file, opened.size
                    )
                total += entry["size"]
                if entry["sha256"] != row.sha256:
                    mismatched.append(row.id)
            for name, body in sorted(replies.items()):
                out.add_stream(f"spool/{name}", io.BytesIO(body), len(body))
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "app_version": app_version(),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "database": {
                    "engine": database.engine,
                    "member": database.member,
                    "revision": snap.revision,
                    "counts": snap.counts,
                },
                "files": {
                    "store": store.describe(),
                    "included": with_files,
                    "count": len(snap.files) - len(missing) if with_files else 0,
                    "bytes": total,
                    "missing": missing,
                    "mismatched": mismatched,
                },
                "spool": {"count": len(replies)},
                "secrets": "not included: keep SECRET_KEY and JWT_SECRET with your secrets",
            }
            out.finish(manifest)
    return BackupReport(manifest)


def restore_backup(
    path: Path,
    *,
    database: Database,
    store: Store,
    spool_dir: Path,
    force: bool,
    echo: Echo,
) -> RestoreReport:
    with tempfile.TemporaryDirectory(prefix="prompthub-restore-") as work:
        folder = Path(work)
        manifest = _read_archive(path, folder)
        part = manifest.get("database") or {}
        if part.get("engine") != database.engine or part.get("member") != database.member:
            raise RestoreRefused(
                f"the archive holds a {part.get('engine')} database and DATABASE_URL names "
                f"a {database.engine} one; restore into a {part.get('engine')} database"
            )
        if database.member not in manifest["members"]:
            raise ArchiveError(f"{path} holds no database ({database.member})")
        behind = _check_revision(part.get("revision"), manifest.get("app_version"), echo)
        file_members = sorted(n for n in manifest["members"] if n.startswith("files/"))
        if not force:
            _refuse_non_empty(database, store, spool_dir, file_members)
        try:
            for name in file_members:
                _, project, stored = name.split("/")
                _put(
                    store, int(project), stored, folder / name, manifest["members"][name]["sha256"]
                )
            echo(f"files: {len(file_members)} restored into {store.describe()}")
            spool_members = sorted(n for n in manifest["members"] if n.startswith("spool/"))
            if spool_members:
                spool_dir.mkdir(parents=True, exist_ok=True)
                for name in spool_members:
                    tmp = spool_dir / f".{secrets.token_hex(8)}.tmp"
                    shutil.copyfile(folder / name, tmp)
                    os.replace(tmp, spool_dir / name.split("/", 1)[1])
                echo(f"reply spool: {len(spool_members)} replies, written by the next server start")
            database.restore(folder / database.member)
            echo(f"database: {database.describe()} restored at revision {part.get('revision')}")
        except (DatabaseError, StorageError, OSError) as exc:
            raise RestoreIncomplete(
                f"{exc}. What was written stays; fix the cause and run the restore again "
                "with --force"
            ) from exc
    return RestoreReport(manifest, behind)


def _check_revision(revision: str | None, version: Any, echo: Echo) -> bool:
    """True when the archive's database is behind this code's migrations."""
    if revision is None:
        echo(
            "warning: the archived database has no migration revision (made by create_all?); "
            "if its tables match this code, record that with `flask db stamp head`"
        )
        return False
    heads, known = code_revisions()
    if revision not in known:
        raise RestoreRefused(
            f"the archive's database is at migration {revision}, which this code does not have "
            f"(its newest: {', '.join(sorted(heads))}): it was made by newer code (PromptHub "
            f"{version}); restore it with that version"
        )
    return revision not in heads


def _refuse_non_empty(
    database: Database, store: Store, spool_dir: Path, file_members: list[str]
) -> None:
    found = []
    rows = sum(database.inspect().counts.values())
    if rows:
        found.append(f"{database.describe()} holds {rows} rows")
    replies = spooled(spool_dir)
    if replies:
        found.append(f"the reply spool {spool_dir} holds {len(replies)} replies")
    present = 0
    for name in file_members:
        _, project, stored = name.split("/")
        if store.head(int(project), stored) is not None:
            present += 1
    if present:
        found.append(f"{store.describe()} already holds {present} of the archive's files")
    if found:
        raise RestoreRefused(
            "the target is not empty: "
            + "; ".join(found)
            + ". Restore into an empty instance, or add --force to overwrite it"
        )


def _put(store: Store, project_id: int, name: str, source: Path, sha256: str) -> None:
    """One file into the store as an upload would go: staged in the store's own staging folder
    (the same filesystem, for the local store's atomic rename), then ``put``."""
    staging = store.staging_dir(project_id)
    staging.mkdir(parents=True, exist_ok=True)
    staged = staging / f".restore-{secrets.token_hex(8)}.part"
    try:
        shutil.copyfile(source, staged)
        with open(staged, "rb") as fh:
            os.fsync(fh.fileno())
        store.put(project_id, name, staged, sha256=sha256)
    finally:
        staged.unlink(missing_ok=True)
