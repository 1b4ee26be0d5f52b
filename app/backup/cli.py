"""``flask backup ARCHIVE`` and ``flask restore ARCHIVE`` (docs/operations.md).

- ``flask backup``: the database (SQLite online backup, or ``pg_dump`` on PostgreSQL), the bytes
  of every file it names from the configured store, and the reply spool, into one ``.tar.gz``
  with a checked manifest. Safe while the server runs. ARCHIVE may be a folder (a dated name is
  made in it); an existing file is replaced only with ``--force``; ``--without-files`` leaves
  the bytes out (a bucket kept by its own versioning). Exit 1 when a file's bytes
  no longer match their sha256 (the archive is still written; the ids are listed).
- ``flask restore``: checks the whole archive first, refuses an archive made by newer code and
  a target that holds data (unless ``--force``), restores files, spool and database, and then
  runs the migrations forward if the archive came from older code. Stop the servers first.

Every refusal is one line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from app.backup.archive import ArchiveError
from app.backup.databases import DatabaseError, for_url
from app.backup.services import RestoreIncomplete, RestoreRefused, make_backup, restore_backup
from app.storage.base import StorageError

# OSError: a full disk, a folder that cannot be written.
FAILURES = (ArchiveError, DatabaseError, RestoreRefused, RestoreIncomplete, StorageError, OSError)


def _parts():
    config = current_app.config
    try:
        database = for_url(config["SQLALCHEMY_DATABASE_URI"])
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    return database, current_app.extensions["storage"], Path(config["REPLY_SPOOL_DIR"])


@click.command("backup")
@click.argument("archive", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace ARCHIVE if it exists.")
@click.option(
    "--without-files",
    is_flag=True,
    help="Leave the stored files out (an S3 bucket kept by versioning and replication).",
)
@with_appcontext
def backup_command(archive: Path, force: bool, without_files: bool) -> None:
    """Write the database, the stored files and the reply spool into one checked archive."""
    if archive.is_dir():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        archive = archive / f"prompthub-{stamp}.tar.gz"
    if archive.exists() and not force:
        raise click.ClickException(f"{archive} exists: choose another name, or add --force")
    database, store, spool_dir = _parts()
    try:
        report = make_backup(
            archive,
            database=database,
            store=store,
            spool_dir=spool_dir,
            echo=click.echo,
            with_files=not without_files,
        )
    except FAILURES as exc:
        raise click.ClickException(f"no backup written: {exc}") from None
    manifest = report.manifest
    files = manifest["files"]
    rows = sum(manifest["database"]["counts"].values())
    stored = f"{files['count']} files ({files['bytes']} bytes)" if files["included"] else "no files"
    click.echo(
        f"wrote {archive}: {rows} rows, {stored}, {manifest['spool']['count']} spooled replies"
    )
    if report.missing:
        click.echo(
            "warning: no bytes in the store for file ids "
            + " ".join(map(str, report.missing))
            + " (deleted while the backup ran, or lost before it)",
            err=True,
        )
    if report.mismatched:
        click.echo(
            "error: stored bytes do not match their sha256 for file ids "
            + " ".join(map(str, report.mismatched)),
            err=True,
        )
        raise click.exceptions.Exit(1)


@click.command("restore")
@click.argument("archive", type=click.Path(path_type=Path))
@click.option(
    "--force", is_flag=True, help="Overwrite a database, spool or store that already holds data."
)
@with_appcontext
def restore_command(archive: Path, force: bool) -> None:
    """Restore an archive written by ``flask backup`` into the configured instance."""
    database, store, spool_dir = _parts()
    try:
        report = restore_backup(
            archive,
            database=database,
            store=store,
            spool_dir=spool_dir,
            force=force,
            echo=click.echo,
        )
    except FAILURES as exc:
        raise click.ClickException(f"restore failed: {exc}") from None
    if report.behind:
        if "migrate" not in current_app.extensions:
            raise click.ClickException(
                "restored, but the database is behind this code's migrations and the db "
                "commands are off (DB_MIGRATE_COMMANDS): run `flask db upgrade`"
            )
        from flask_migrate import upgrade

        click.echo("the archive is from older code: running the migrations forward")
        upgrade()
    manifest = report.manifest
    click.echo(
        f"restored {archive} (written {manifest.get('created_at')} by PromptHub "
        f"{manifest.get('app_version')}); secrets are not in archives: this instance signs "
        "with its own SECRET_KEY, so users sign in again unless it is the old one"
    )
