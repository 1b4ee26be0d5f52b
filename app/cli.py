"""Flask CLI commands: ``flask providers`` says which model answers chat; ``flask files …``
checks the file store and migrates local files into it (``app/files/cli.py``); ``flask backup``
and ``flask restore`` write and restore one archive of everything kept (``app/backup/cli.py``)."""

from __future__ import annotations

import click
from flask import Flask, current_app

from app.backup.cli import backup_command, restore_command
from app.files.cli import files_cli
from app.llm import describe, is_offline


def register_cli(app: Flask) -> None:
    app.cli.add_command(files_cli)
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)

    @app.cli.command("providers")
    def providers() -> None:
        """Print which providers answer chat (or that the offline demo model does)."""
        line = describe(current_app)
        if is_offline(current_app):
            click.secho("=" * 78, fg="yellow")
            click.secho(line, fg="yellow", bold=True)
            click.secho("=" * 78, fg="yellow")
        else:
            click.echo(line)
