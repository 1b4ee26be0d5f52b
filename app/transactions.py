"""Database session handling in one place: when a transaction ends, and what stays loaded.

Every request (and every turn's thread, every background job) uses Flask-SQLAlchemy's scoped
session. A session holds a pooled connection from its first statement until its transaction
ends, so the rules are about ending transactions at the right moments:

- ``transaction()``: one unit of work. It commits when the outermost block ends and rolls back
  when it raises; blocks inside it join it (so Compare's two turns and its comparison row are
  one transaction: ``compare/services.start_comparison``). ``keep_loaded=True`` commits without
  expiring what the session holds.
- ``release()``: before slow work that needs no database (a provider call, an upload to the
  file store, a child process), end the transaction so its connection goes back to the pool,
  keeping loaded rows loaded (reading them again afterwards would check a connection out again
  for values we already have). Pending changes are committed.
- ``keep_loaded()``: commit inside it without expiring what the session holds. Rows just written
  are what the caller renders next; expired, each would be reloaded by a SELECT on a freshly
  checked-out connection (all our defaults are computed in Python, so nothing changes on the
  server side).
- ``rollback_quietly()``: roll back when the database may be gone (a turn's final store, a
  reader's poll): the pool discards a dead connection, the error is not raised again.
- ``init_app``: every app context (a request, a turn's thread, a job) ends its session without
  raising when the database went away since the last statement: the connection is dropped and
  the answer already made stands (before, Flask-SQLAlchemy's own ``session.remove`` raised in
  the teardown and gunicorn answered a stored upload with a bare 500).
- ``DATABASE_AWAY``: the errors that mean the database cannot be reached (refused, gone
  mid-statement, no pooled connection in time), for work that waits and tries again later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Flask
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from app.extensions import db

log = logging.getLogger(__name__)
DATABASE_AWAY = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)
_DEPTH = "transaction_depth"  # Session.info keys: how many ``transaction`` blocks are open,
_AFTER = "after_commit"  # and what to run once the outermost one has committed


@contextmanager
def keep_loaded() -> Iterator[Session]:
    """Commits inside this block leave the session's rows loaded (not expired)."""
    session = db.session()
    previous = session.expire_on_commit
    session.expire_on_commit = False
    try:
        yield session
    finally:
        session.expire_on_commit = previous


@contextmanager
def transaction(*, keep_loaded: bool = False) -> Iterator[Session]:
    """One unit of work: committed when the outermost block ends, rolled back if it raises.
    A block inside another joins it and commits nothing (the outermost block's ``keep_loaded``
    decides)."""
    session = db.session()
    depth = session.info.get(_DEPTH, 0)
    session.info[_DEPTH] = depth + 1
    try:
        yield session
    except BaseException:
        session.info[_DEPTH] = depth
        if depth == 0:
            session.info.pop(_AFTER, None)
            rollback_quietly()
        raise
    session.info[_DEPTH] = depth
    if depth == 0:
        try:
            if keep_loaded:
                _commit_keeping_loaded(session)
            else:
                session.commit()
        except BaseException:
            session.info.pop(_AFTER, None)
            raise
        for callback in session.info.pop(_AFTER, ()):
            callback()


def on_commit(callback: Callable[[], None]) -> None:
    """Run ``callback`` once the outermost ``transaction`` block has committed (at once outside
    any); never when it rolls back."""
    session = db.session()
    if session.info.get(_DEPTH, 0):
        session.info.setdefault(_AFTER, []).append(callback)
    else:
        callback()


def in_transaction() -> bool:
    """Whether a ``transaction`` block is open (its caller commits)."""
    return db.session().info.get(_DEPTH, 0) > 0


def _commit_keeping_loaded(session: Session) -> None:
    previous = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = previous


def release() -> None:
    """End the transaction before slow work, so no connection is held while it runs: pending
    changes are committed, loaded rows stay loaded. Inside a ``transaction`` block it is a
    mistake (the block's work would be committed early), so it raises."""
    session = db.session()
    if session.info.get(_DEPTH, 0):
        raise RuntimeError("release() inside a transaction block")
    _commit_keeping_loaded(session)


def rollback_quietly() -> None:
    """Roll back, also when the database is gone (the pool replaces the connection)."""
    try:
        db.session.rollback()
    except SQLAlchemyError:
        pass


def end_session(exc: BaseException | None = None) -> None:
    """Close the context's session; a connection the database closed meanwhile (it stopped
    after the last statement: its rollback fails) is dropped with one warning, not raised."""
    try:
        db.session.remove()
    except SQLAlchemyError as error:
        db.session.remove()  # its transaction already ended: this only forgets the session
        orig = getattr(error, "orig", None) or error
        log.warning("session ended without its connection: %s", type(orig).__name__)


def init_app(app: Flask) -> None:
    # Registered after Flask-SQLAlchemy's: teardowns run last-registered first, so its own
    # ``session.remove`` finds nothing left to close.
    app.teardown_appcontext(end_session)
