"""A turn is a job, not a connection: it is generated in the background and read by any number
of HTTP streams, which may come and go.

- ``launch`` (after ``services.start_turn`` stored the user's message and the reply row) opens
  the turn in the broker and publishes ``start``. The request that started the turn drives
  ``services.run_turn`` itself while its client is connected (no hop through the broker for the
  common case); if the client goes away, a thread of this process (a greenlet under gevent)
  carries the turn on to its end. Each ``Delta`` becomes a ``delta`` event, the outcome a
  ``done`` or ``error`` event, all published for other readers; nothing a reader does ends the
  turn.
- ``launch_detached`` starts a turn that no request drives (Compare starts two at once): the
  same ``start`` and the same generation, in a background thread from the first event; every
  reader attaches with ``follow``.
- ``follow`` is one reader: the broker's events after a given id, live, until the terminal
  event, with ``None`` for a keep-alive while nothing comes. When the broker does not know the
  turn (another process without Redis, Redis down, the turn long finished) it reads the
  database instead: a ``snapshot`` of the text so far, then what the checkpoints add, then the
  stored outcome.
- ``stop`` asks for the end of a turn from any process: through the broker at once (the local
  process, or Redis pub/sub), and through the database (``stopping``), which the generating
  process sees at its next checkpoint even when no broker can reach it.

The turn id is the id of the assistant row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing

from flask import Flask, current_app
from sqlalchemy import select

from app.chat import readers, replies, services
from app.chat.broker import TERMINAL, Entry, get_broker
from app.chat.serializers import conversation_json, message_json
from app.errors import NotFound
from app.extensions import db
from app.models import Conversation, Message, MessageStatus, Project, Role, User
from app.models.base import utcnow
from app.providers.base import Cancel

log = logging.getLogger(__name__)

FINISHED_AS_DONE = (MessageStatus.COMPLETE,)


class Running:
    """The turns this process generates, with their Cancel (what Stop pulls)."""

    def __init__(self) -> None:
        self._cancels: dict[int, Cancel] = {}
        self._lock = threading.Lock()

    def add(self, turn_id: int, cancel: Cancel) -> None:
        with self._lock:
            self._cancels[turn_id] = cancel

    def remove(self, turn_id: int) -> None:
        with self._lock:
            self._cancels.pop(turn_id, None)

    def stop(self, turn_id: int) -> None:
        with self._lock:
            cancel = self._cancels.get(turn_id)
        if cancel is not None:
            cancel.cancel()

    def __len__(self) -> int:
        return len(self._cancels)

    def stop_all(self, timeout: float = 10.0) -> bool:
        """Stop every turn of this process and wait for them to be stored (shutdown, tests)."""
        with self._lock:
            cancels = list(self._cancels.values())
        for cancel in cancels:
            cancel.cancel()
        deadline = time.monotonic() + timeout
        while self._cancels and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._cancels


def _running(app: Flask | None = None) -> Running:
    return (app or current_app).extensions["running_turns"]


# --- generating ------------------------------------------------------------------------------


def start_payload(turn: services.Turn) -> dict:
    return {
        "turn_id": turn.reply_id,
        "conversation": conversation_json(turn.conversation),
        "user_message": message_json(turn.user_message),
    }


def outcome_event(event: services.Done | services.Failed) -> tuple[str, dict]:
    message = message_json(event.message, html=True)
    if isinstance(event, services.Done):
        return "done", {"message": message, "stored": event.stored}
    return "error", {
        "error": {"code": event.code, "message": event.error},
        "partial": event.partial,
        "message": message,
        "stored": event.stored,
    }


def launch(turn: services.Turn) -> Iterator[Entry | None]:
    """Start ``turn`` and return the events for the reader that started it (this request).

    While that reader is connected it drives the generation itself, so its events take no hop
    through the broker (each is still published there for every other reader). If it goes
    away, a background thread carries the turn on to its end: leaving is not Stop."""
    app = current_app._get_current_object()
    broker = get_broker()
    broker.open(turn.reply_id)
    start = broker.publish(turn.reply_id, "start", start_payload(turn))
    return _first_reader(app, turn.reply_id, start, _generate(app, turn))


def _first_reader(
    app: Flask, turn_id: int, start: Entry, source: Iterator[Entry | None]
) -> Iterator[Entry | None]:
    try:
        yield start
        for entry in source:  # noqa: UP028 (``yield from`` would close ``source`` with us)
            yield entry
    except GeneratorExit:  # the client went away: the turn goes on without it
        threading.Thread(
            target=_carry_on, args=(app, source), name=f"turn-{turn_id}", daemon=True
        ).start()
        raise


def launch_detached(turn: services.Turn) -> int:
    """Start ``turn`` with no reader of its own: a background thread of this process (a
    greenlet under gevent) generates it from the start, as ``_carry_on`` does once the
    starting reader has left. Readers attach with ``follow`` (``GET /api/turns/<id>/events``).
    Returns the turn id.

    It is registered as running before the thread starts, so a Stop (or a shutdown's
    ``stop_all``) that comes first still reaches it."""
    app = current_app._get_current_object()
    broker = get_broker()
    broker.open(turn.reply_id)
    broker.publish(turn.reply_id, "start", start_payload(turn))
    cancel = Cancel()
    _running(app).add(turn.reply_id, cancel)
    source = _generate(app, turn, cancel)
    threading.Thread(
        target=_carry_on, args=(app, source), name=f"turn-{turn.reply_id}", daemon=True
    ).start()
    return turn.reply_id


def _carry_on(app: Flask, source: Iterator[Entry | None]) -> None:
    with app.app_context():
        for _entry in source:
            pass


def _generate(
    app: Flask, turn: services.Turn, cancel: Cancel | None = None
) -> Iterator[Entry | None]:
    """Run the turn, publishing each event; yields them too (``None`` while the model is
    silent). Registered as running (Stop reaches it) from its first step to its end."""
    broker = app.extensions["broker"]
    cancel = cancel or Cancel()
    _running(app).add(turn.reply_id, cancel)
    ended = False
    try:
        try:
            for event in services.run_turn(turn, cancel):
                if isinstance(event, services.Delta):
                    yield broker.publish(turn.reply_id, "delta", {"text": event.text})
                elif isinstance(event, services.Done | services.Failed):
                    ended = True
                    yield broker.publish(turn.reply_id, *outcome_event(event))
                else:
                    yield None  # silence: a keep-alive for the reader
        except Exception:
            log.exception("turn %s failed; the reply was kept as incomplete", turn.reply_id)
        if not ended:  # run_turn stored the reply in its finally; tell the readers
            stored = db.session.get(Message, turn.reply_id)
            if stored is not None:  # (gone with its conversation: nobody to tell)
                yield broker.publish(
                    turn.reply_id,
                    "error",
                    {
                        "error": {"code": "internal_error", "message": "The reply failed."},
                        "partial": bool(stored.content),
                        "message": message_json(stored, html=True),
                        "stored": True,
                    },
                )
    finally:
        _running(app).remove(turn.reply_id)
        broker.close(turn.reply_id)


# --- reading ---------------------------------------------------------------------------------


def get_turn_for(user: User, turn_id: int) -> Message:
    """The assistant row ``turn_id`` in one of ``user``'s conversations, else ``NotFound``."""
    found = db.session.scalar(
        select(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(Project, Project.id == Conversation.project_id)
        .where(Message.id == turn_id, Message.role == Role.ASSISTANT, Project.owner_id == user.id)
    )
    if found is None:
        raise NotFound("No such turn.")
    return found


def open_reader(
    user: User, turn_id: int, after: str | None
) -> tuple[Iterator[Entry | None], Callable[[], None]]:
    """One reader of ``user``'s turn (``GET /api/turns/<id>/events``): its events, and the
    function that gives its reader slot back, to call when the response closes.

    ``NotFound`` for another user's turn, ``TooManyReaders`` beyond the caps (``readers``)."""
    row = get_turn_for(user, turn_id)
    finished = row.status not in replies.LIVE
    db.session.commit()  # hold no connection while the stream waits
    slot = readers.get_gate().acquire(user.id, turn_id)
    return _renewing(follow(turn_id, after, finished=finished), slot), slot.release


def _renewing(entries: Iterator[Entry | None], slot: readers.Slot) -> Iterator[Entry | None]:
    """``entries``, keeping the reader's slot while they come (a keep-alive at least once per
    heartbeat)."""
    with closing(entries):
        for entry in entries:
            slot.renew()
            yield entry


def follow(
    turn_id: int, after: str | None = None, *, finished: bool = False
) -> Iterator[Entry | None]:
    """The turn's events after ``after`` until its terminal event; ``None`` = keep-alive.

    A turn that had ``finished`` is never waited on: the broker is looked at without waiting,
    and when it has nothing after ``after`` (an id past the end, a turn it no longer holds) the
    stored outcome is the answer, at once. Events it has are sent; the terminal one may still
    be on its way (the row is stored just before it is published), so then it reads on."""
    broker = get_broker()
    heartbeat = current_app.config["CHAT_HEARTBEAT_SECONDS"]
    while True:
        entries = broker.read(turn_id, after, timeout=0 if finished else heartbeat)
        if entries is None or (finished and not entries):
            yield from from_database(turn_id)
            return
        if not entries:
            if _over(turn_id):  # it ended (our ``after`` is past its end) or its process died
                yield from from_database(turn_id)
                return
            yield None
            continue
        for entry in entries:
            yield entry
            after = entry.id
            if entry.event in TERMINAL:
                return
        finished = False  # what remains is the terminal event, published any moment now


def _over(turn_id: int) -> bool:
    """Whether the database answers for the turn from here: it has ended (a reader whose
    ``after`` is past the terminal event would otherwise wait for the broker to forget it), or
    its lease is over (its process died). Unknown while the database is out of reach: keep
    waiting, the broker may still bring the end."""
    try:
        found = db.session.execute(
            select(Message.status, Message.lease_until).where(Message.id == turn_id)
        ).first()
        db.session.commit()  # hold no connection while waiting for the next event
    except replies.DB_DOWN:
        replies.rollback()
        return False
    if found is None:
        return True  # deleted with its conversation: the database says so
    status, lease = found
    return status not in replies.LIVE or (lease is not None and lease < utcnow())


def from_database(turn_id: int) -> Iterator[Entry | None]:
    """The turn as its row tells it: ``snapshot`` (the text so far), ``delta``s as checkpoints
    add text, then the outcome. For a turn the broker cannot show."""
    poll = current_app.config["CHAT_RESUME_POLL_SECONDS"]
    sent: str | None = None
    while True:
        try:
            row = db.session.execute(
                select(Message)
                .where(Message.id == turn_id)
                .execution_options(populate_existing=True)
            ).scalar_one_or_none()
        except replies.DB_DOWN:
            replies.rollback()
            yield None  # the database is out of reach: keep the reader, try again
            time.sleep(poll)
            continue
        if row is not None and row.status in replies.LIVE and replies.expire_stale([row]):
            continue  # it was abandoned: read it again, interrupted
        if row is None:
            db.session.commit()
            return  # deleted meanwhile
        if row.status not in replies.LIVE:
            yield final_entry(row)
            db.session.commit()
            return
        text = row.content
        db.session.commit()
        if sent is None or not text.startswith(sent):
            yield Entry(None, "snapshot", {"text": text})
        elif text != sent:
            yield Entry(None, "delta", {"text": text[len(sent) :]})
        else:
            yield None
        sent = text
        time.sleep(poll)


def final_entry(row: Message) -> Entry:
    """The terminal event of a finished turn, from its stored row."""
    message = message_json(row, html=True)
    stopped = row.status == MessageStatus.INCOMPLETE and row.error == replies.STOPPED_TEXT
    if row.status in FINISHED_AS_DONE or stopped:
        return Entry(None, "done", {"message": message, "stored": True})
    code = "interrupted" if row.status == MessageStatus.INTERRUPTED else "provider_unavailable"
    return Entry(
        None,
        "error",
        {
            "error": {"code": code, "message": row.error or "The reply failed."},
            "partial": bool(row.content),
            "message": message,
            "stored": True,
        },
    )


# --- Stop ------------------------------------------------------------------------------------


def stop(user: User, turn_id: int) -> Message:
    """Ask for the end of a turn, from any process. Idempotent: a finished turn is left as it
    is. Returns the row as it is now (``stopping`` until the generating process ends it)."""
    get_turn_for(user, turn_id)  # 404 before anything else
    replies.request_stop(turn_id)
    get_broker().stop(turn_id)
    return db.session.execute(
        select(Message).where(Message.id == turn_id).execution_options(populate_existing=True)
    ).scalar_one()


def _interrupted(app: Flask):
    def tell_readers(reply_id: int) -> None:
        broker = app.extensions["broker"]
        row = db.session.get(Message, reply_id)
        if row is None:
            return
        event = final_entry(row)
        if broker.is_local(reply_id):
            broker.publish(reply_id, event.event, event.data)
            broker.close(reply_id)
        else:
            broker.publish_elsewhere(reply_id, event.event, event.data)

    return tell_readers


def init_app(app: Flask) -> None:
    from app import observability
    from app.chat import broker

    broker.init_app(app)
    readers.init_app(app, app.extensions["broker"])
    if app.config.get("REDIS_URL"):
        observability.register_check(
            app, "redis", lambda: app.extensions["broker"].status().get("redis", "ok")
        )
    running = app.extensions["running_turns"] = Running()
    app.extensions["broker"].on_stop(running.stop)
    replies.on_interrupted(app, _interrupted(app))
