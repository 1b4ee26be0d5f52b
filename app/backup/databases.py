"""The database part of a backup, one class per engine, chosen from ``DATABASE_URL`` by a dict
registry (``ENGINES``).

Each takes a **snapshot** into a file and reads from that same snapshot what the rest of the
backup needs: the migration revision, row counts, and the file rows whose bytes go in too.

- SQLite: the online backup API (``sqlite3.Connection.backup``) copies the live database page by
  page in one step under a read lock, so the copy is consistent while the server writes (writers
  wait for it, up to their ``busy_timeout``). The facts are read from the copy.
- PostgreSQL: one ``REPEATABLE READ`` transaction exports its snapshot
  (``pg_export_snapshot()``), reads the facts, and ``pg_dump --snapshot`` dumps exactly what it
  saw (custom format). Restore is ``pg_restore --clean --if-exists --single-transaction``: all
  or nothing. The server binaries' major version must be at least the server's.

Connection details go to ``pg_dump``/``pg_restore`` through the ``PG*`` environment variables,
never the command line (where other users of the machine could read a password).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.engine import make_url

from app.files.migration import FileRef
from app.settings import ROOT


class DatabaseError(Exception):
    """The database part cannot be backed up or restored; ``str()`` says why."""


@dataclass
class Snapshot:
    revision: str | None
    counts: dict[str, int]
    files: list[FileRef] = field(default_factory=list)


class Database(Protocol):
    engine: str  # the registry's name
    member: str  # the archive member the snapshot is stored as

    def describe(self) -> str: ...

    def snapshot(self, dest: Path) -> Snapshot: ...

    def inspect(self) -> Snapshot: ...

    def restore(self, source: Path) -> None: ...


def _facts(conn: Any, tables: list[str]) -> Snapshot:
    """Revision, row counts and file rows through a DB-API connection (sqlite3 or psycopg)."""

    def rows(sql: str) -> list[tuple]:
        return list(conn.execute(sql).fetchall())

    revision = None
    if "alembic_version" in tables:
        found = rows("SELECT version_num FROM alembic_version")
        revision = found[0][0] if found else None
    counts = {
        name: rows(f'SELECT count(*) FROM "{name}"')[0][0]  # noqa: S608 (names from the catalog)
        for name in sorted(tables)
        if name != "alembic_version"
    }
    files = []
    if "files" in tables:
        files = [
            FileRef(*row)
            for row in rows(
                "SELECT id, project_id, stored_name, size, sha256 FROM files ORDER BY id"
            )
        ]
    return Snapshot(revision=revision, counts=counts, files=files)


def _sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    found = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return [name for (name,) in found]


class SqliteDatabase:
    engine = "sqlite"
    member = "database.sqlite3"

    def __init__(self, url: str) -> None:
        database = make_url(url).database
        if not database or database == ":memory:":
            raise DatabaseError("an in-memory SQLite database cannot be backed up or restored")
        self.path = Path(database)

    def describe(self) -> str:
        return f"SQLite database {self.path}"

    def snapshot(self, dest: Path) -> Snapshot:
        if not self.path.is_file():
            raise DatabaseError(f"there is no database at {self.path}")
        try:
            source = sqlite3.connect(self.path, timeout=30)
            try:
                copy = sqlite3.connect(dest)
                try:
                    source.backup(copy)  # all pages in one step: one consistent state
                finally:
                    copy.close()
            finally:
                source.close()
            return self._read(dest)
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.describe()} could not be copied: {exc}") from exc

    def inspect(self) -> Snapshot:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return Snapshot(revision=None, counts={})
        try:
            return self._read(self.path)
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.describe()} cannot be read: {exc}") from exc

    @staticmethod
    def _read(path: Path) -> Snapshot:
        conn = sqlite3.connect(path)
        try:
            return _facts(conn, _sqlite_tables(conn))
        finally:
            conn.close()

    def restore(self, source: Path) -> None:
        try:
            snap = sqlite3.connect(source)
            try:
                (verdict,) = snap.execute("PRAGMA integrity_check").fetchone()
                if verdict != "ok":
                    raise DatabaseError(
                        f"the archived database fails its integrity check: {verdict}"
                    )
                self.path.parent.mkdir(parents=True, exist_ok=True)
                target = sqlite3.connect(self.path, timeout=30)
                try:
                    snap.backup(target)  # replaces every page of the target, under its lock
                finally:
                    target.close()
            finally:
                snap.close()
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.describe()} could not be restored: {exc}") from exc


class PostgresDatabase:
    engine = "postgresql"
    member = "database.pgdump"

    def __init__(self, url: str) -> None:
        self.url = make_url(url)

    def describe(self) -> str:
        return f"PostgreSQL database {self.url.database} on {self.url.host or 'localhost'}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key, value in (
            ("PGHOST", self.url.host),
            ("PGPORT", self.url.port),
            ("PGUSER", self.url.username),
            ("PGPASSWORD", self.url.password),
            ("PGDATABASE", self.url.database),
        ):
            if value is not None:
                env[key] = str(value)
        return env

    def _connect(self):
        import psycopg

        try:
            return psycopg.connect(
                host=self.url.host,
                port=self.url.port,
                user=self.url.username,
                password=self.url.password,
                dbname=self.url.database,
                connect_timeout=10,
            )
        except psycopg.Error as exc:
            raise DatabaseError(f"{self.describe()} cannot be reached: {exc}") from exc

    def _run(self, *command: str) -> None:
        if shutil.which(command[0]) is None:
            raise DatabaseError(
                f"{command[0]} is not installed (Debian: postgresql-client, the server's major "
                "version or newer)"
            )
        done = subprocess.run(  # noqa: S603 (fixed program, arguments are ours)
            command, env=self._env(), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise DatabaseError(f"{command[0]} failed: {done.stderr.strip() or done.returncode}")

    def _tables(self, conn) -> list[str]:
        found = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
        return [name for (name,) in found]

    def snapshot(self, dest: Path) -> Snapshot:
        import psycopg

        with self._connect() as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            try:
                (name,) = conn.execute("SELECT pg_export_snapshot()").fetchone()
                facts = _facts(conn, self._tables(conn))
            except psycopg.Error as exc:
                raise DatabaseError(f"{self.describe()}: {exc}") from exc
            # The transaction stays open while pg_dump imports its snapshot.
            self._run(
                "pg_dump",
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--snapshot={name}",
                f"--file={dest}",
            )
            conn.rollback()
        return facts

    def inspect(self) -> Snapshot:
        import psycopg

        with self._connect() as conn:
            try:
                return _facts(conn, self._tables(conn))
            except psycopg.Error as exc:
                raise DatabaseError(f"{self.describe()}: {exc}") from exc

    def restore(self, source: Path) -> None:
        self._run(
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={self.url.database}",
            str(source),
        )


ENGINES: dict[str, type[SqliteDatabase] | type[PostgresDatabase]] = {
    "sqlite": SqliteDatabase,
    "postgresql": PostgresDatabase,
}


def for_url(url: str) -> Database:
    name = make_url(url).get_backend_name()
    if name not in ENGINES:
        raise DatabaseError(f"no backup for {name} databases (SQLite and PostgreSQL only)")
    return ENGINES[name](url)


def code_revisions() -> tuple[set[str], set[str]]:
    """The migrations this code has: (heads, every revision)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    script = ScriptDirectory.from_config(config)
    return set(script.get_heads()), {rev.revision for rev in script.walk_revisions()}
