"""A turn is a job, not a connection: it is generated in the background and read by any number
of HTTP streams, which may come and go.

- ``launch`` (after an entry point of ``start`` stored the user's message and the reply row)
  makes the provider call (``services.call_provider``: under way while the response's head is
  written), opens the turn in the broker and publishes ``start``. The request that started the
  turn drives ``services.run_turn`` itself while its client is connected (no hop through the
  broker for the common case); if the client goes away, a thread of this process (a greenlet
  under gevent) carries the turn on to its end. Each of its events (``app/providers/events.py``)
  is encoded once (``streaming.encode``) and published for other readers; nothing a reader does
  ends the turn.
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
- A reader elsewhere learns within seconds that the process writing its turn died (the
  broker's writer heartbeat) and ends the reply as ``interrupted`` with the text the broker
  holds; a process told to stop lets its turns finish first (``drain``).

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

from app import metrics
from app.chat import drain, readers, replies, services, start, streaming
from app.chat.broker import TERMINAL, Entry, get_broker
from app.chat.streaming import encode
from app.errors import NotFound
from app.extensions import db
from app.models import Conversation, Message, MessageStatus, Project, Role, User
from app.models.base import utcnow
from app.providers.events import Done, Failed, Heartbeat, Snapshot, Started, Text
from app.providers.transport import Cancel
from app.transactions import release, rollback_quietly

log = logging.getLogger(__name__)

FINISHED_AS_DONE = (MessageStatus.COMPLETE,)


class Running:
    """The turns this process generates, with their Cancel (what Stop pulls), and the threads
    that carry turns on without a reader: a turn has ended when its thread has left its app
    context too (the session's connection is back in the pool by then)."""

    def __init__(self) -> None:
        self._cancels: dict[int, Cancel] = {}
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def carry_on(self, app: Flask, source: Iterator[Entry | None], turn_id: int) -> None:
        """Drive ``source`` to its end in a background thread (a greenlet under gevent)."""
        thread = threading.Thread(
            target=self._carry_on, args=(app, source), name=f"turn-{turn_id}", daemon=True
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _carry_on(self, app: Flask, source: Iterator[Entry | None]) -> None:
        try:
            with app.app_context():
                for _entry in source:
                    pass
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _busy(self) -> bool:
        return bool(self._cancels or self._threads)

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

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._cancels)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for every turn of this process to end; True if they did."""
        deadline = time.monotonic() + timeout
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._busy()

    def interrupt_all(self) -> list[int]:
        """Cut every turn of this process short as ``interrupted`` (a shutdown): each stores
        what arrived and publishes its terminal event. Returns their ids."""
        with self._lock:
            cancels = dict(self._cancels)
        for cancel in cancels.values():
            cancel.cancel(services.SHUTDOWN)
        return list(cancels)

    def stop_all(self, timeout: float = 10.0) -> bool:
        """Stop every turn of this process and wait for them to be stored (shutdown, tests)."""
        with self._lock:
            cancels = list(self._cancels.values())
        for cancel in cancels:
            cancel.cancel()
        deadline = time.monotonic() + timeout
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._busy()


def _running(app: Flask | None = None) -> Running:
    return (app or current_app).extensions["running_turns"]


# --- generating ------------------------------------------------------------------------------


def started(turn: start.Turn) -> Started:
    return Started(turn.reply_id, turn.conversation, turn.user_message)


def launch(turn: start.Turn) -> Iterator[Entry | None]:
    """Start ``turn`` and return the events for the reader that started it (this request).

    While that reader is connected it drives the generation itself, so its events take no hop
    through the broker (each is still published there for every other reader). If it goes
    away, a background thread carries the turn on to its end: leaving is not Stop."""
    app = current_app._get_current_object()
    cancel = Cancel()
    # The provider call first: it is under way while the response's head and ``start`` are
    # written (issue 34: what stands between the commit and the provider's first token).
    try:
        upstream = services.call_provider(turn, cancel)
    except Exception:  # made again in the generation, which tells the readers what failed
        upstream = None
    try:
        broker = get_broker()
        broker.open(turn.reply_id)
        start = broker.publish(turn.reply_id, *encode(started(turn)))
    except BaseException:
        cancel.cancel()
        raise
    return _first_reader(app, turn.reply_id, start, _generate(app, turn, cancel, upstream))


def _first_reader(
    app: Flask, turn_id: int, start: Entry, source: Iterator[Entry | None]
) -> Iterator[Entry | None]:
    try:
        yield start
        for entry in source:  # noqa: UP028 (``yield from`` would close ``source`` with us)
            yield entry
    except GeneratorExit:  # the client went away: the turn goes on without it
        _running(app).carry_on(app, source, turn_id)
        raise


def launch_detached(turn: start.Turn) -> int:
    """Start ``turn`` with no reader of its own: a background thread of this process (a
    greenlet under gevent) generates it from the start, as ``Running.carry_on`` does once the
    starting reader has left. Readers attach with ``follow`` (``GET /api/turns/<id>/events``).
    Returns the turn id.

    It is registered as running before the thread starts, so a Stop (or a shutdown's
    ``stop_all``) that comes first still reaches it."""
    app = current_app._get_current_object()
    broker = get_broker()
    broker.open(turn.reply_id)
    broker.publish(turn.reply_id, *encode(started(turn)))
    cancel = Cancel()
    _running(app).add(turn.reply_id, cancel)
    _running(app).carry_on(app, _generate(app, turn, cancel), turn.reply_id)
    return turn.reply_id


def _generate(
    app: Flask,
    turn: start.Turn,
    cancel: Cancel | None = None,
    upstream: services.Upstream | None = None,
) -> Iterator[Entry | None]:
    """Run the turn, publishing each event; yields them too (``None`` while the model is
    silent). Registered as running (Stop reaches it) from its first step to its end."""
    broker = app.extensions["broker"]
    cancel = cancel or Cancel()
    _running(app).add(turn.reply_id, cancel)
    metrics.TURNS_LIVE.inc()
    ended = False
    try:
        try:
            for event in services.run_turn(turn, cancel, upstream):
                wire = encode(event)
                if wire is None:
                    if isinstance(event, Heartbeat):
                        yield None  # a keep-alive for the reader
                    continue
                ended = isinstance(event, Done | Failed)
                yield broker.publish(turn.reply_id, *wire)
        except Exception:
            log.exception("turn %s failed; the reply was kept as incomplete", turn.reply_id)
        if not ended:  # run_turn stored the reply in its finally; tell the readers
            stored = db.session.get(Message, turn.reply_id)
            if stored is not None:  # (gone with its conversation: nobody to tell)
                failed = Failed(
                    code="internal_error",
                    reason="The reply failed.",
                    partial=bool(stored.content),
                    message=stored,
                )
                yield broker.publish(turn.reply_id, *encode(failed))
    finally:
        metrics.TURNS_LIVE.dec()
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
    release()  # hold no connection while the stream waits
    slot = readers.get_gate().acquire(user.id, turn_id)
    return _renewing(follow(turn_id, after, finished=finished), slot), slot.release


def _renewing(entries: Iterator[Entry | None], slot: readers.Slot) -> Iterator[Entry | None]:
    """``entries``, keeping the reader's slot while they come (a keep-alive at least once per
    heartbeat)."""
    with closing(entries), metrics.READERS_OPEN.track_inprogress():
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
    be on its way (the row is stored just before it is published), so then it reads on.

    While the turn is quiet the reader looks whether its writer died (``writer_gone``: the
    Redis heartbeat) and, if so, ends the reply as interrupted with the broker's text; at each
    heartbeat it also checks the row (``_over``). A process that is shutting down (``drain``)
    ends its readers of other processes' turns: their clients resume elsewhere."""
    app = current_app._get_current_object()
    broker = get_broker()
    heartbeat = current_app.config["CHAT_HEARTBEAT_SECONDS"]
    # While the turn is quiet, look this often whether its writer died (its heartbeat key,
    # with Redis): a reader learns of a dead writer in seconds, not after the lease.
    look = min(heartbeat, broker.writer_check_seconds)
    quiet_since = time.monotonic()
    while True:
        if drain.draining(app) and not broker.is_local(turn_id):
            return  # this process is stopping: the client resumes on another one
        entries = broker.read(turn_id, after, timeout=0 if finished else look)
        if entries is None or (finished and not entries):
            yield from from_database(turn_id)
            return
        if not entries:
            if broker.writer_gone(turn_id) and _interrupt(app, turn_id):
                yield from from_database(turn_id)  # the reply as stored: interrupted
                return
            if time.monotonic() - quiet_since < heartbeat:
                continue
            quiet_since = time.monotonic()
            if _over(turn_id):  # it ended (our ``after`` is past its end) or its process died
                yield from from_database(turn_id)
                return
            yield None
            continue
        quiet_since = time.monotonic()
        for entry in entries:
            yield entry
            after = entry.id
            if entry.event in TERMINAL:
                return
        finished = False  # what remains is the terminal event, published any moment now


def _interrupt(app: Flask, turn_id: int) -> bool:
    """End a reply whose writer died, with the broker's text (``replies.interrupt``; whoever
    notices first changes the row). True when the database answers for the turn from here;
    False while it is out of reach (keep waiting: the lease sweep will do it later)."""
    try:
        replies.interrupt(turn_id, app)
    except replies.DB_DOWN:
        rollback_quietly()
        return False
    return True


def _over(turn_id: int) -> bool:
    """Whether the database answers for the turn from here: it has ended (a reader whose
    ``after`` is past the terminal event would otherwise wait for the broker to forget it), or
    its lease is over (its process died). Unknown while the database is out of reach: keep
    waiting, the broker may still bring the end."""
    try:
        found = db.session.execute(
            select(Message.status, Message.lease_until).where(Message.id == turn_id)
        ).first()
        release()  # hold no connection while waiting for the next event
    except replies.DB_DOWN:
        rollback_quietly()
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
            rollback_quietly()
            yield None  # the database is out of reach: keep the reader, try again
            time.sleep(poll)
            continue
        if row is not None and row.status in replies.LIVE and replies.expire_stale([row]):
            continue  # it was abandoned: read it again, interrupted
        if row is None:
            release()
            return  # deleted meanwhile
        if row.status not in replies.LIVE:
            yield final_entry(row)
            release()
            return
        text = row.content
        release()
        if drain.draining(current_app):
            return  # this process is stopping: the client resumes on another one
        if sent is None or not text.startswith(sent):
            yield streaming.entry(Snapshot(text))
        elif text != sent:
            yield streaming.entry(Text(text[len(sent) :]))
        else:
            yield None
        sent = text
        time.sleep(poll)


def final_event(row: Message) -> Done | Failed:
    """The terminal event of a finished turn, from its stored row."""
    stopped = row.status == MessageStatus.INCOMPLETE and row.error == replies.STOPPED_TEXT
    if row.status in FINISHED_AS_DONE or stopped:
        return Done(message=row)
    code = "interrupted" if row.status == MessageStatus.INTERRUPTED else "provider_unavailable"
    return Failed(
        code=code, reason=row.error or "The reply failed.", partial=bool(row.content), message=row
    )


def final_entry(row: Message) -> Entry:
    return streaming.entry(final_event(row))


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
        wire = encode(final_event(row))
        if broker.is_local(reply_id):
            broker.publish(reply_id, *wire)
            broker.close(reply_id)
        else:
            broker.publish_elsewhere(reply_id, *wire)

    return tell_readers


def init_app(app: Flask) -> None:
    from app import observability
    from app.chat import broker

    broker.init_app(app)
    drain.init_app(app)
    readers.init_app(app, app.extensions["broker"])
    if app.config.get("REDIS_URL"):
        observability.register_check(
            app, "redis", lambda: app.extensions["broker"].status().get("redis", "ok")
        )
    running = app.extensions["running_turns"] = Running()
    app.extensions["broker"].on_stop(running.stop)
    replies.on_interrupted(app, _interrupted(app))
