"""Is the database's schema the one this code was written for? For ``/readyz`` and the load
balancer's node check (``app/observability.py``).

The code's head revisions are read once, when the app is created, from the migration files in
``migrations/versions/`` (their ``revision`` and ``down_revision`` assignments, parsed with
``ast``: workers load neither Alembic nor the migration modules). The database's revisions are
the rows of ``alembic_version``, which ``flask db upgrade`` writes. Compared, they say:

- ``ok``: the database is at this code's head;
- ``not migrated`` (no ``alembic_version``) or ``behind`` (an older revision of this code's
  chain): not ready. The code would query tables or columns that are not there and answer 500s;
- ``ahead`` (a revision this code does not know): ready. It is what every old node sees during
  a rolling deploy, after the release step migrated and before it is replaced, and migrations
  are written to keep working for the previous code (docs/deploy.md).

A database answer that says "ready" is kept ``CACHE_SECONDS`` per process (a schema changes
only with a deploy); one that says "not ready" is asked again on the next check, so a node
becomes ready as soon as the migrations ran.
"""

from __future__ import annotations

import ast
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)
CACHE_SECONDS = 10.0
ASK_EVERY_SECONDS = 10.0
VERSION_TABLE = "alembic_version"
UPGRADE = "run `flask db upgrade`"


@dataclass(frozen=True)
class Verdict:
    ready: bool
    value: str  # "ok", or what is wrong, for the readiness report


def read_heads(versions: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(head revisions, every revision) of the migration files in ``versions``."""
    parents: dict[str, tuple[str, ...]] = {}
    for path in sorted(versions.glob("*.py")):
        found: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    found[target.id] = ast.literal_eval(node.value)
        if isinstance(found.get("revision"), str):
            down = found.get("down_revision")
            parents[found["revision"]] = (
                () if down is None else (down,) if isinstance(down, str) else tuple(down)
            )
    referenced = {parent for ups in parents.values() for parent in ups}
    return frozenset(set(parents) - referenced), frozenset(parents)


# The files do not change under a running process: read once per process (the tests build an
# app per test; ~3 ms each).
_heads_of = functools.cache(read_heads)


def compare(database: frozenset[str] | None, heads: frozenset[str], known: frozenset[str]):
    """The verdict for the database's revisions (``None``: no version table). Pure."""
    code = ", ".join(sorted(heads))
    if not database:
        return Verdict(False, f"not migrated: no revision in {VERSION_TABLE}; {UPGRADE}")
    if database == heads:
        return Verdict(True, "ok")
    at = ", ".join(sorted(database))
    if database - known:
        return Verdict(True, f"ahead: database at {at}, newer than this code ({code})")
    return Verdict(False, f"behind: database at {at}, code at {code}; {UPGRADE}")


class SchemaCheck:
    """The code's heads, and the last answer the database gave about its own."""

    def __init__(self, migrations: Path) -> None:
        versions = migrations / "versions"
        self.heads, self.known = _heads_of(versions) if versions.is_dir() else (frozenset(),) * 2
        self.last: Verdict | None = None  # the last answer the database gave
        self._fresh_until = 0.0
        self._next_ask = 0.0  # the node check: when it may ask a database that failed again

    def fresh(self) -> Verdict | None:
        """The last verdict while it is kept (a ready one, for ``CACHE_SECONDS``)."""
        if self.last is not None and self.last.ready and time.monotonic() < self._fresh_until:
            return self.last
        return None

    def may_ask(self) -> bool:
        """Whether the node check may ask the database now: not while an earlier question is
        unanswered or failed less than ``ASK_EVERY_SECONDS`` ago, so a database that hangs (up
        to ``DB_CONNECT_TIMEOUT_SECONDS``) costs one slow check, never two in a row."""
        now = time.monotonic()
        if now < self._next_ask:
            return False
        self._next_ask = now + ASK_EVERY_SECONDS
        return True

    def check(self, connection: Connection) -> Verdict:
        """The database's verdict (kept ``CACHE_SECONDS`` when ready); database errors go on."""
        if not self.heads:
            return Verdict(True, "unchecked: no migrations beside the code")
        if (fresh := self.fresh()) is not None:
            return fresh
        revisions = None
        if inspect(connection).has_table(VERSION_TABLE):
            rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608
            revisions = frozenset(rows.scalars())
        verdict = compare(revisions, self.heads, self.known)
        if verdict != self.last and not verdict.ready:
            log.warning("database schema: %s", verdict.value)
        self.last = verdict
        self._fresh_until = time.monotonic() + CACHE_SECONDS
        self._next_ask = 0.0  # it answered: the next check may ask again at once
        return verdict
