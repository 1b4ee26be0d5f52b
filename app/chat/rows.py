"""The chat hot path's writes as SQLAlchemy Core statements: one round trip per row, no unit of
work.

Every turn inserts two or three rows that are written once and then changed only through
guarded UPDATEs (``replies``). Adding them to the ORM session cost a flush with its
bookkeeping per row, most of a turn's server CPU before the provider call
(docs/benchmarks.md, section 15). Here each insert is one prebuilt ``INSERT … RETURNING id``
(compiled once per process by SQLAlchemy's statement cache), and the row comes back as a
**transient** model instance holding exactly the values written: the turn renders it
(``start``, ``done``) and never adds it to the session, so nothing is flushed twice and nothing
is lazily loaded later.

Column defaults computed in Python (``created_at``, ``fallback``…) are computed here, once, for
both the statement and the instance, so the two always agree.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Table, insert, update
from sqlalchemy.orm.attributes import set_committed_value

from app.extensions import db
from app.models.base import Base

M = TypeVar("M", bound=Base)

_INSERTS: dict[str, Any] = {}


def _insert_statement(table: Table):
    stmt = _INSERTS.get(table.name)
    if stmt is None:
        stmt = _INSERTS[table.name] = insert(table).returning(table.c.id)
    return stmt


def _with_defaults(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` plus every Python-side column default not given (scalars and callables)."""
    full = dict(values)
    for column in table.columns:
        default = column.default
        if column.key in full or default is None:
            continue
        if default.is_scalar:
            full[column.key] = default.arg
        elif default.is_callable:
            full[column.key] = default.arg(None)  # SQLAlchemy wraps a zero-argument callable
    return full


def insert_row(model: type[M], /, **values: Any) -> M:
    """Insert one row and return it as a transient instance (with its id), never added to the
    session. Relationships are not loaded: the caller sets the ones it renders."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    full = _with_defaults(table, values)
    row_id = db.session.execute(_insert_statement(table), full).scalar_one()
    row = model(**full)
    row.id = row_id
    return row


def update_row(row: Base, /, **values: Any) -> None:
    """``UPDATE`` one row by id with ``values`` (and its ``onupdate`` columns, computed here),
    and give the instance the same values as committed state (nothing left for the ORM to
    flush)."""
    table: Table = type(row).__table__  # type: ignore[attr-defined]
    for column in table.columns:
        if column.onupdate is not None and column.key not in values and column.onupdate.is_callable:
            values[column.key] = column.onupdate.arg(None)
    db.session.execute(update(table).where(table.c.id == row.id).values(**values))
    for key, value in values.items():
        set_committed_value(row, key, value)
