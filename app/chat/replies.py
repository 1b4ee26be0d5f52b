"""The assistant row's life, so that a reply is stored exactly once whatever fails.

- ``start_turn`` inserts the row as ``streaming`` with a lease, in the same commit as the user's
  message (``placeholder``).
- While it streams, ``checkpoint`` stores the text so far and renews the lease, at most every
  ``CHAT_CHECKPOINT_SECONDS``. A checkpoint that meets a database outage is skipped: the
  stream goes on.
- ``finish`` writes the final state with one guarded ``UPDATE`` (only a row still ``streaming``
  or ``interrupted`` changes, so a second write of the same reply changes nothing), and in the
  same transaction, only when that ``UPDATE`` changed the row, the reply's charge to the
  spending ledger (``app/usage.py``): a reply is charged exactly once, spooled or not. If the
  database is unreachable it retries with backoff for ``CHAT_STORE_RETRY_SECONDS``; then the
  final values go to the **spool** (``REPLY_SPOOL_DIR``: one JSON file per reply, written with
  fsync and an atomic rename) and ``finish`` says so, so the client's terminal event can tell the
  truth. ``replay_spool`` writes them when the database is back.
- ``expire_leases`` turns rows whose lease ran out (their process died: ``kill -9``, an OOM
  kill, a lost node) into ``interrupted``; ``interrupt`` does the same for one reply whose
  writer is known to be gone (a reader saw its heartbeat expire, or a shutdown's drain ran
  out of time). Either stores the text the broker holds (the turn's ``delta`` events: what its
  readers were shown) when it is longer than the last checkpoint, so an interrupted reply never
  has less text than its readers saw.

The two sweeps are chores of ``app/maintenance.py``; the chat page also expires a stale row of
the conversation it shows at once (``expire_stale``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from app import maintenance, usage
from app.extensions import db
from app.models import Message, MessageStatus
from app.models.base import utcnow
from app.transactions import rollback_quietly

log = logging.getLogger(__name__)

# What an unreachable or restarting database raises (psycopg and sqlite3 alike).
DB_DOWN = (OperationalError, InterfaceError)
LIVE = (MessageStatus.STREAMING, MessageStatus.STOPPING)  # a process is (or was) writing it
OPEN = (*LIVE, MessageStatus.INTERRUPTED)  # what a final store may still change
INTERRUPTED_TEXT = "The server stopped while writing this reply."
STOPPED_TEXT = "Stopped before the reply was complete."
# ``Message.error_kind`` of a reply cut short by Stop (or a reader leaving) and by a dead process.
STOPPED = "stopped"
INTERRUPTED = "interrupted"


def lease_until():
    """When a reply renewed now would count as abandoned."""
    return utcnow() + timedelta(seconds=current_app.config["CHAT_REPLY_LEASE_SECONDS"])


# The two writes of every reply, built once as Core statements on the table (no ORM
# bulk-update bookkeeping, no statement to build per call); the values come as parameters.
_messages = Message.__table__
_CHECKPOINT = update(_messages).where(
    _messages.c.id == bindparam("reply_id"), _messages.c.status == MessageStatus.STREAMING
)
_FINAL = update(_messages).where(
    _messages.c.id == bindparam("reply_id"), _messages.c.status.in_(OPEN)
)


def checkpoint(reply_id: int, text: str) -> bool:
    """Store the text so far and renew the lease. False when the row is no longer
    ``streaming`` (a Stop arrived through the database, or the conversation was deleted): the
    caller stops generating. A database outage only skips the checkpoint (True)."""
    try:
        changed = db.session.execute(
            _CHECKPOINT, {"reply_id": reply_id, "content": text, "lease_until": lease_until()}
        ).rowcount
        db.session.commit()
    except DB_DOWN as exc:
        log.warning("reply %s: checkpoint skipped, database unavailable: %s", reply_id, exc)
        rollback_quietly()
        return True
    return bool(changed)


def request_stop(reply_id: int) -> None:
    """Mark a live reply ``stopping``: the process generating it sees this at its next
    checkpoint, when the broker could not reach it sooner. Idempotent."""
    db.session.execute(
        update(Message)
        .where(Message.id == reply_id, Message.status == MessageStatus.STREAMING)
        .values(status=MessageStatus.STOPPING)
    )
    db.session.commit()


def _write(reply_id: int, values: dict[str, Any], charge: usage.Charge | None = None) -> None:
    """One statement, and the charge if the row changed: the conversation's ``updated_at`` was
    set when the turn started (its place in the list is the time of the user's last message),
    so the end of a reply touches only its own row.

    On PostgreSQL that is one statement (``usage.record_after``), atomic on its own, so it runs
    in autocommit when the session has no transaction open: no ``BEGIN`` and no ``COMMIT``
    round trip between the provider's end and the reader's ``done``. Exactly once holds as
    before: the statement changes the row (and charges it) at most once, whoever repeats it."""
    params = {**values, "lease_until": None, "reply_id": reply_id}
    session = db.session()
    if db.engine.dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    if charge is None:
        session.execute(_FINAL, params)
    else:
        usage.record_after(_final_returning(tuple(params)), params, charge)
    session.commit()


_FINAL_RETURNING: dict[tuple[str, ...], Any] = {}


def _final_returning(keys: tuple[str, ...]):
    """``_FINAL`` with its values named (a statement inside another one cannot take them from
    the parameters) and ``RETURNING id``, for ``usage.record_after``; built once per key set."""
    stmt = _FINAL_RETURNING.get(keys)
    if stmt is None:
        named = {key: bindparam(key) for key in keys if key != "reply_id"}
        stmt = _FINAL_RETURNING[keys] = _FINAL.values(named).returning(_messages.c.id)
    return stmt


def finish(
    reply_id: int,
    conversation_id: int,
    values: dict[str, Any],
    charge: usage.Charge | None = None,
) -> bool:
    """Store the reply's final state. True when it is in the database; False when the database
    stayed unreachable for ``CHAT_STORE_RETRY_SECONDS`` and the reply went to the spool (with
    its conversation, for whoever reads the spool by hand)."""
    deadline = time.monotonic() + current_app.config["CHAT_STORE_RETRY_SECONDS"]
    delay = 0.1
    while True:
        try:
            _write(reply_id, values, charge)
            return True
        except DB_DOWN as exc:
            rollback_quietly()
            if time.monotonic() + delay > deadline:
                log.error("reply %s: database unavailable (%s); kept in the spool", reply_id, exc)
                spool().put(reply_id, conversation_id, values, charge)
                return False
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


# --- the spool -------------------------------------------------------------------------------


class FileSpool:
    """Final reply values waiting for the database, one file per reply in a local folder.

    Durable on this machine (fsync, atomic rename); every process of the node replays it. A
    multi-node deployment shares nothing here: the node that spooled a reply writes it."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def put(
        self,
        reply_id: int,
        conversation_id: int,
        values: dict[str, Any],
        charge: usage.Charge | None = None,
    ) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        entry = {"reply_id": reply_id, "conversation_id": conversation_id, "values": values}
        if charge is not None:
            entry["charge"] = charge.to_json()
        final = self.folder / f"{int(reply_id)}.json"
        tmp = final.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(entry, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash
        finally:
            os.close(fd)

    def entries(self) -> list[tuple[Path, dict]]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                found.append((path, json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError) as exc:
                log.error("spool entry %s unreadable, left in place: %s", path.name, exc)
        return found

    def __len__(self) -> int:
        return len(self.entries())


def spool() -> FileSpool:
    return current_app.extensions["reply_spool"]


def replay_spool(app: Flask | None = None) -> int:
    """Write spooled replies to the database; returns how many were written."""
    written = 0
    for path, entry in spool().entries():
        try:
            _write(entry["reply_id"], entry["values"], usage.Charge.from_json(entry.get("charge")))
        except DB_DOWN as exc:
            rollback_quietly()
            log.warning("spooled replies wait: database still unavailable (%s)", exc)
            break
        path.unlink(missing_ok=True)
        written += 1
        log.info("spooled reply %s written", entry["reply_id"])
    return written


# --- leases ----------------------------------------------------------------------------------


def expire_leases(app: Flask | None = None, *, conversation_id: int | None = None) -> list[int]:
    """Mark replies whose lease ran out as ``interrupted``, with the broker's text when it is
    longer than their checkpoint, and tell their readers (the broker's terminal ``error``
    event, for readers in other processes); returns their ids."""
    stmt = select(Message.id).where(Message.status.in_(LIVE), Message.lease_until < utcnow())
    if conversation_id is not None:
        stmt = stmt.where(Message.conversation_id == conversation_id)
    found = list(db.session.scalars(stmt))
    db.session.commit()
    ids = [reply_id for reply_id in found if _interrupt(app, reply_id, lease_over=True)]
    if ids:
        log.warning("reply(s) %s interrupted: their process stopped", ids)
        _tell(app, ids)
    return ids


def interrupt(reply_id: int, app: Flask | None = None) -> bool:
    """Mark one live reply ``interrupted`` now, whatever its lease says: its writer is gone
    (its heartbeat expired) or is shutting down. Same text rule and readers' event as
    ``expire_leases``; idempotent (whoever notices first changes the row). True if it did."""
    if not _interrupt(app, reply_id, lease_over=False):
        return False
    log.warning("reply %s interrupted: its process stopped", reply_id)
    _tell(app, [reply_id])
    return True


def _interrupt(app: Flask | None, reply_id: int, *, lease_over: bool) -> bool:
    """One guarded ``UPDATE``: only a row still live (and, for the sweep, still past its
    lease: a checkpoint meanwhile renewed it) changes. The broker's text replaces the
    checkpoint only when longer, compared in the statement itself."""
    broker = (app or current_app).extensions.get("broker")
    text = broker.text(reply_id) if broker is not None else None
    c = _messages.c
    stmt = update(_messages).where(c.id == reply_id, c.status.in_(LIVE))
    if lease_over:
        stmt = stmt.where(c.lease_until < utcnow())
    values: dict[str, Any] = {
        "status": MessageStatus.INTERRUPTED,
        "lease_until": None,
        "error": INTERRUPTED_TEXT,
        "error_kind": INTERRUPTED,
    }
    if text:
        values["content"] = case((func.length(c.content) < len(text), text), else_=c.content)
    changed = db.session.execute(stmt.values(**values)).rowcount
    db.session.commit()
    return bool(changed)


def _tell(app: Flask | None, ids: list[int]) -> None:
    for reply_id in ids:
        for listener in _interrupted_listeners(app):
            listener(reply_id)


def _interrupted_listeners(app: Flask | None):
    return (app or current_app).extensions.get("reply_interrupted", [])


def expire_stale(messages: list[Message]) -> bool:
    """For a page about to show ``messages``: expire the stale ones now. True if any was."""
    now = utcnow()
    stale = [m for m in messages if m.status in LIVE and m.lease_until and m.lease_until < now]
    if not stale:
        return False
    expire_leases(conversation_id=stale[0].conversation_id)
    return True


def on_interrupted(app: Flask, listener) -> None:
    """``listener(reply_id)`` is called for each reply the lease sweep interrupts."""
    app.extensions.setdefault("reply_interrupted", []).append(listener)


def init_app(app: Flask) -> None:
    app.extensions["reply_spool"] = FileSpool(app.config["REPLY_SPOOL_DIR"])
    # Spooled replies first: they hold the whole text, which the lease sweep would not.
    maintenance.register(app, "reply spool", replay_spool)
    maintenance.register(app, "reply leases", expire_leases)
