"""``flask files …``: check the configured store, copy local files into it.

- ``flask files check-storage``: builds the store from the settings and proves it works
  (``HeadBucket`` for S3: the bucket exists and the credentials are accepted; for the local
  directory, that ``UPLOAD_DIR`` can be written). Exit 1 with the reason otherwise. gunicorn's
  worker start hook runs the same check (``gunicorn.conf.py``).
- ``flask files migrate-storage``: copies every file row's bytes from ``UPLOAD_DIR`` (or
  ``--from``) to the store ``STORAGE_URL`` names, checked against the row's sha256, resumable
  (``app/files/migration.py``). Local files are never deleted.
"""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.extensions import db
from app.files.migration import FileRef, migrate
from app.models import StoredFile
from app.storage.base import StorageError, StoreUnavailable
from app.storage.local import LocalStore
from app.transactions import release

files_cli = AppGroup("files", help="Project files: check the store, migrate local files to S3.")


@files_cli.command("check-storage")
def check_storage() -> None:
    """Check that the configured store works (bucket exists, credentials accepted)."""
    store = current_app.extensions["storage"]
    try:
        store.check()
    except StorageError as exc:
        raise click.ClickException(f"storage is not usable: {exc}") from None
    click.echo(f"storage ok: {store.describe()}")


@files_cli.command("migrate-storage")
@click.option(
    "--from",
    "source_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The local directory to copy from (default: UPLOAD_DIR).",
)
def migrate_storage(source_dir: Path | None) -> None:
    """Copy every file's local bytes to the store STORAGE_URL names, checked by sha256.

    Resumable: files already in the store with the right size and sha256 are skipped. Local
    files are never deleted."""
    target = current_app.extensions["storage"]
    if target.kind == "local":
        raise click.ClickException(
            "STORAGE_URL is empty, so the files already live in UPLOAD_DIR: set STORAGE_URL "
            "(and the S3 settings) to the store to copy them to"
        )
    source = LocalStore(source_dir or Path(current_app.config["UPLOAD_DIR"]))
    try:
        target.check()
    except StorageError as exc:
        raise click.ClickException(f"storage is not usable: {exc}") from None
    rows = db.session.execute(
        select(
            StoredFile.id,
            StoredFile.project_id,
            StoredFile.stored_name,
            StoredFile.size,
            StoredFile.sha256,
        ).order_by(StoredFile.id)
    ).all()
    release()  # no transaction stays open while bytes are copied
    files = [FileRef(*row) for row in rows]
    click.echo(f"copying {len(files)} files from {source.describe()} to {target.describe()}")

    def progress(outcome: str, file: FileRef) -> None:
        click.echo(f"{outcome:<10} file {file.id} (project {file.project_id}, {file.size} bytes)")

    try:
        report = migrate(files, source=source, target=target, progress=progress)
    except StoreUnavailable as exc:
        raise click.ClickException(
            f"stopped: {exc}. Run the command again to go on where it stopped"
        ) from None
    counts = report.counts()
    click.echo(", ".join(f"{k} {v}" for k, v in counts.items()))
    if not report.ok:
        for outcome in ("missing", "mismatched", "failed"):
            if report.done[outcome]:
                ids = " ".join(str(i) for i in report.done[outcome])
                click.echo(f"{outcome}: file ids {ids}", err=True)
        raise click.exceptions.Exit(1)
    click.echo("local files are kept; remove UPLOAD_DIR yourself once the app runs on the store")
