"""``flask backup`` and ``flask restore``: everything PromptHub keeps, in one checked archive.

One archive (``.tar.gz``) holds a consistent snapshot of the database, the bytes of every file
that snapshot names, the reply spool, and last a ``manifest.json`` (format, app version, the
database's migration revision, time, row counts, and the size and sha256 of every member).
Secrets (``SECRET_KEY``, ``JWT_SECRET``, ``instance/secret_key``) are never in it.

- ``archive.py``: writing the archive and reading one back, checked member by member against
  its manifest before anything is restored. No Flask.
- ``databases.py``: the database part per engine, chosen by a dict registry (SQLite through its
  online backup API; PostgreSQL through ``pg_dump``/``pg_restore`` on one exported snapshot).
- ``cli.py``: the two commands, which put the parts together in order.

The database snapshot comes first and names the files to copy, so the archive is consistent
while the server runs: a file uploaded later is not in the snapshot either, and stored bytes
never change under a name. docs/operations.md has the what and why for operators.
"""
