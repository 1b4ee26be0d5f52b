"""Turn events between the process generating a reply and every reader of it.

One small interface, two backends, chosen once from ``REDIS_URL`` (``BROKERS``):

- ``LocalBroker``: in-process logs of events, one per turn, with a condition variable for
  readers. The embedded default (``make run``: one process, no Redis).
- ``RedisBroker``: the local logs (readers in the generating process never touch Redis) plus
  a Redis Stream per turn (``<prefix>turn:<id>``) for readers in other processes and machines,
  and a pub/sub channel (``<prefix>turn-stop``) that carries Stop to whichever process runs the
  turn (``app/pubsub.py``: the listener thread, reconnects, shutdown).

An entry's id is ``0-<n>``, ``n`` counting the turn's events from 1; the Redis Stream uses the
same ids (``XADD`` with an explicit id), so a client may resume from any process with the
``Last-Event-ID`` it has. A stream expires ``TURN_EVENTS_TTL_SECONDS`` after its last event, a
local log that long after its turn ended: the database stays the truth, the broker holds only
what is in flight. Redis failures never stop a turn: publishing logs once and goes on (readers
elsewhere fall back to the database, see ``turns.follow``).

Both backends give the text a turn's ``delta`` events hold (``text``): what its readers were
shown, which a reply cut short by a dead process or a shutdown is stored with
(``replies.interrupt``). With Redis each process that generates turns also keeps a **writer
heartbeat** (``<prefix>writer:<token>``, renewed every third of ``CHAT_WRITER_TTL_SECONDS``);
a turn's ``start`` entry names its writer, so a reader in another process learns within
seconds that the writer died (``writer_gone``) instead of waiting for the reply's lease.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from app.pubsub import Channel

log = logging.getLogger(__name__)

TERMINAL = frozenset({"done", "error"})
StopHandler = Callable[[int], None]


@dataclass(frozen=True)
class Entry:
    id: str | None  # None: an event that is not in the broker (read from the database)
    event: str
    data: dict[str, Any]


def _delta_text(entries: list[Entry]) -> str:
    return "".join(e.data.get("text", "") for e in entries if e.event == "delta")


def entry_number(entry_id: str | None) -> int:
    """The ``n`` of ``0-n`` (0 for None or another form)."""
    if entry_id and entry_id.startswith("0-") and entry_id[2:].isdigit():
        return int(entry_id[2:])
    return 0


@dataclass
class _Log:
    changed: threading.Condition  # on the broker's one lock: only this turn's readers wake
    entries: list[Entry] = field(default_factory=list)
    closed_at: float | None = None


class LocalBroker:
    backend = "memory"
    KEEP_ENDED = 500  # ended turns kept in memory at most (readers after that use the database)

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._logs: dict[int, _Log] = {}
        # Ended turns in the order they ended (monotonic times grow), so a purge looks only at
        # the oldest few instead of sorting every log on every new turn.
        self._ended: OrderedDict[int, float] = OrderedDict()
        self._lock = threading.Lock()
        self._stop_handlers: list[StopHandler] = []

    # -- the generating side --------------------------------------------------------------

    def open(self, turn_id: int) -> None:
        with self._lock:
            self._purge()
            self._ended.pop(turn_id, None)  # running again: never purged while it runs
            self._logs[turn_id] = _Log(threading.Condition(self._lock))

    def publish(self, turn_id: int, event: str, data: dict[str, Any]) -> Entry:
        with self._lock:
            found = self._logs.get(turn_id)
            if found is None:
                found = self._logs[turn_id] = _Log(threading.Condition(self._lock))
            entry = Entry(f"0-{len(found.entries) + 1}", event, data)
            found.entries.append(entry)
            found.changed.notify_all()
        return entry

    def close(self, turn_id: int) -> None:
        with self._lock:
            found = self._logs.get(turn_id)
            if found is not None:
                found.closed_at = time.monotonic()
                self._ended[turn_id] = found.closed_at
                self._ended.move_to_end(turn_id)
                found.changed.notify_all()

    def is_local(self, turn_id: int) -> bool:
        return turn_id in self._logs

    def publish_elsewhere(self, turn_id: int, event: str, data: dict[str, Any]) -> None:
        """An event about a turn another process ran: no other process reads this broker."""

    def _purge(self) -> None:
        """Forget ended turns past the TTL, and the oldest beyond ``KEEP_ENDED``: memory stays
        bounded under any load, and a late reader gets the outcome from the database."""
        limit = time.monotonic() - self.ttl
        while self._ended:
            turn_id, closed_at = next(iter(self._ended.items()))
            if closed_at >= limit and len(self._ended) <= self.KEEP_ENDED:
                break
            del self._ended[turn_id]
            self._logs.pop(turn_id, None)

    # -- readers --------------------------------------------------------------------------

    def read(self, turn_id: int, after: str | None, timeout: float) -> list[Entry] | None:
        """Entries after ``after``, waiting up to ``timeout`` for the first; [] when none came,
        None when this broker does not know the turn (never seen, or expired)."""
        start = entry_number(after)
        with self._lock:
            found = self._logs.get(turn_id)
            if found is None:
                return None
            if len(found.entries) <= start and found.closed_at is None:
                found.changed.wait_for(
                    lambda: len(found.entries) > start or found.closed_at is not None,
                    timeout=timeout,
                )
            if len(found.entries) <= start and found.closed_at is not None:
                return None  # nothing after the end: the database answers from here
            return found.entries[start:]

    def text(self, turn_id: int) -> str | None:
        """The text of the turn's ``delta`` events, in order: what its readers were shown.
        None when this broker does not hold the turn."""
        with self._lock:
            found = self._logs.get(turn_id)
            entries = list(found.entries) if found is not None else None
        return None if entries is None else _delta_text(entries)

    # How often a reader whose turn is quiet asks ``writer_gone``: never, here.
    writer_check_seconds = float("inf")

    def writer_gone(self, turn_id: int) -> bool:
        """Whether the process generating the turn is known to be dead. In-process logs are
        written by this process: never."""
        return False

    # -- Stop -----------------------------------------------------------------------------

    def on_stop(self, handler: StopHandler) -> None:
        self._stop_handlers.append(handler)

    def stop(self, turn_id: int) -> None:
        for handler in self._stop_handlers:
            handler(turn_id)

    def status(self) -> dict[str, str]:
        return {"backend": self.backend}

    def shutdown(self) -> None:
        """Release what the broker holds (tests build one per app)."""


class RedisBroker(LocalBroker):
    backend = "redis"

    def __init__(
        self,
        ttl: float,
        url: str,
        prefix: str,
        longest_wait: float = 30.0,
        *,
        connections: int = 200,
        read_connections: int = 100,
        writer_ttl: float = 3.0,
    ) -> None:
        import redis

        super().__init__(ttl)
        self._errors = self.errors = (redis.RedisError, OSError)
        # Both pools are bounded and keep what they opened for the next caller: a burst of
        # readers can never leave more than ``read_connections`` idle connections behind
        # (issue 26: 1,207 stayed open after an attack), and a caller beyond the bound waits
        # briefly for one instead of opening another.
        self.redis = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                url,
                max_connections=connections,
                timeout=2,
                socket_timeout=2,
                socket_connect_timeout=1,
            )
        )
        # Blocking reads (XREAD BLOCK up to ``longest_wait``) need a socket timeout above the
        # block, or every quiet wait would end as a timeout error; writes keep the short one.
        # When every reading connection is taken, a reader reads the database instead.
        self.reading = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                url,
                max_connections=read_connections,
                timeout=0.5,
                socket_timeout=longest_wait + 5,
                socket_connect_timeout=1,
                client_name=f"{prefix}turn-reader",
            )
        )
        self.longest_wait = longest_wait
        self.prefix = prefix
        self.channel = f"{prefix}turn-stop"
        self._degraded: set[int] = set()
        self._busy_said = -60.0
        self._away = False  # an outage already logged (once per outage, not once per turn)
        self._stops = Channel(self.redis, self.channel, self._heard_stop)
        # The writer heartbeat: this process's token, set on its first turn (after the fork).
        self.writer_ttl = writer_ttl
        self.writer_check_seconds = writer_ttl / 3
        self._writer: str | None = None
        self._writer_lock = threading.Lock()
        self._closing = threading.Event()
        self._writers: dict[int, str | None] = {}  # turns read from elsewhere -> their writer

    def key(self, turn_id: int) -> str:
        return f"{self.prefix}turn:{int(turn_id)}"

    def publish(self, turn_id: int, event: str, data: dict[str, Any]) -> Entry:
        entry = super().publish(turn_id, event, data)
        self._send(turn_id, entry.id, event, data)
        return entry

    def publish_elsewhere(self, turn_id: int, event: str, data: dict[str, Any]) -> None:
        """An event about a turn another process ran (the lease sweep's ``interrupted``): no
        local log, and an id after any the dead process wrote (``*``: Redis picks the time).
        Only for a stream that still exists: nobody can be reading an expired one."""
        try:
            if self.redis.exists(self.key(turn_id)):
                self._send(turn_id, "*", event, data)
        except self._errors as exc:
            self._unavailable(turn_id, exc, "")

    def open(self, turn_id: int) -> None:
        super().open(turn_id)
        self._stops.listen()  # this process generates turns: listen for their Stop
        self._start_heartbeat()

    # -- the writer heartbeat -------------------------------------------------------------

    def alive_key(self, writer: str) -> str:
        return f"{self.prefix}writer:{writer}"

    def _start_heartbeat(self) -> None:
        """Set this process's heartbeat key now (a reader may look at once) and keep it alive
        in a daemon thread (a greenlet under gevent). Cheap to call on every turn."""
        if self._writer is not None and self._writer.endswith(f":{os.getpid()}"):
            return
        with self._writer_lock:
            if self._writer is not None and self._writer.endswith(f":{os.getpid()}"):
                return
            self._writer = f"{uuid.uuid4().hex[:12]}:{os.getpid()}"
            self._beat()
            threading.Thread(target=self._heartbeat, name="writer-heartbeat", daemon=True).start()

    def _beat(self) -> bool:
        try:
            self.redis.set(self.alive_key(self._writer), b"1", px=int(self.writer_ttl * 1000))
        except self._errors:
            return False  # readers elsewhere read the database meanwhile (their lease check)
        return True

    def _heartbeat(self) -> None:
        while not self._closing.wait(self.writer_ttl / 3):
            self._beat()

    def writer_gone(self, turn_id: int) -> bool:
        """Whether the process that generates a turn read from here has died: its ``start``
        entry names a writer whose heartbeat key has expired. False when unknown (a turn of
        this process, no writer named, Redis unavailable): the reply's lease decides then."""
        if self.is_local(turn_id):
            return False
        try:
            if turn_id not in self._writers:
                if len(self._writers) > 10_000:
                    self._writers.clear()
                first = self.redis.xrange(self.key(turn_id), "-", "+", count=1)
                named = first[0][1].get(b"w") if first else None
                self._writers[turn_id] = named.decode() if named else None
            writer = self._writers[turn_id]
            if writer is None:
                return False
            # A Redis restarted empty has lost the heartbeat key and the stream alike, for a
            # writer that may be alive and about to renew its key: only a key gone from a
            # Redis that still holds the turn's stream means a dead writer.
            pipe = self.redis.pipeline(transaction=False)
            alive, stream = pipe.exists(self.alive_key(writer)).exists(self.key(turn_id)).execute()
            return not alive and bool(stream)
        except self._errors:
            return False

    def text(self, turn_id: int) -> str | None:
        """The local log's text for a turn of this process, else the Redis Stream's (one
        ``XRANGE``); None when neither holds the turn, or Redis is unavailable."""
        if self.is_local(turn_id):
            return super().text(turn_id)
        try:
            items = self.redis.xrange(self.key(turn_id), "-", "+")
        except self._errors as exc:
            self._unavailable(turn_id, exc, "; an interrupted reply keeps its checkpoint's text")
            return None
        if not items:
            return None
        return "".join(
            json.loads(fields[b"d"]).get("text", "")
            for _id, fields in items
            if fields.get(b"e") == b"delta"
        )

    def _send(self, turn_id: int, entry_id: str, event: str, data: dict[str, Any]) -> None:
        if turn_id in self._degraded:
            return  # once Redis failed for a turn its stream has a gap: readers use the database
        try:
            pipe = self.redis.pipeline(transaction=False)
            fields = {"e": event, "d": json.dumps(data, separators=(",", ":"))}
            if event == "start" and self._writer is not None:
                fields["w"] = self._writer  # who writes the turn (``writer_gone``)
            pipe.xadd(self.key(turn_id), fields, id=entry_id)
            pipe.expire(self.key(turn_id), int(self.ttl))
            pipe.execute()
        except self._errors as exc:
            self._degraded.add(turn_id)
            self._unavailable(
                turn_id, exc, "; other processes show its replies from the database when stored"
            )
        else:
            self._reachable()

    def close(self, turn_id: int) -> None:
        super().close(turn_id)
        self._degraded.discard(turn_id)

    def read(self, turn_id: int, after: str | None, timeout: float) -> list[Entry] | None:
        if self.is_local(turn_id):
            return super().read(turn_id, after, timeout)
        key = self.key(turn_id)
        # ``timeout`` 0 looks without waiting (XREAD without BLOCK: BLOCK 0 waits forever).
        block = int(min(timeout, self.longest_wait) * 1000) or None
        try:
            found = self.reading.xread({key: after or "0-0"}, count=500, block=block)
            if not found and not self.redis.exists(key):
                return None
        except self._errors as exc:
            if str(exc) == "No connection available.":  # the bounded pool is all in use
                self._busy()
            else:
                self._unavailable(turn_id, exc, "; readers read the database")
            return None
        self._reachable()
        entries = []
        for _key, items in found:
            for entry_id, fields in items:
                entries.append(
                    Entry(entry_id.decode(), fields[b"e"].decode(), json.loads(fields[b"d"]))
                )
        return entries

    def _unavailable(self, turn_id: int, exc: Exception, consequence: str) -> None:
        """Logged once per outage (then at debug level), not once per turn or reader."""
        if self._away:
            log.debug("turn %s: Redis unavailable (%s)", turn_id, exc)
            return
        self._away = True
        log.warning("Redis unavailable (%s) at turn %s%s", exc, turn_id, consequence)

    def _reachable(self) -> None:
        if self._away:
            self._away = False
            log.info("Redis reachable again")

    def _busy(self) -> None:
        """Said at most once a minute, not once per reader."""
        now = time.monotonic()
        if now - self._busy_said >= 60:
            self._busy_said = now
            log.warning(
                "all %d Redis reading connections are in use; further readers of turns from "
                "other processes read the database (REDIS_READ_CONNECTIONS)",
                self.reading.connection_pool.max_connections,
            )

    def stop(self, turn_id: int) -> None:
        super().stop(turn_id)  # a turn of this process stops even while Redis is down
        if not self._stops.publish(str(int(turn_id))):
            log.warning("turn %s: Stop not sent through Redis (unavailable)", turn_id)

    def _heard_stop(self, message: str) -> None:
        """Stop requests from every process; handlers ignore turns they do not run."""
        if message.isdigit():
            for handler in self._stop_handlers:
                handler(int(message))

    def shutdown(self) -> None:
        self._closing.set()
        self._stops.close()
        # A client given its pool never closes it (``auto_close_connection_pool`` is off).
        self.redis.connection_pool.disconnect()
        self.reading.connection_pool.disconnect()

    def status(self) -> dict[str, str]:
        try:
            self.redis.ping()
            return {"backend": self.backend, "redis": "ok"}
        except self._errors:
            return {"backend": self.backend, "redis": "unavailable"}


def build(config) -> LocalBroker:
    ttl = float(config["TURN_EVENTS_TTL_SECONDS"])
    url = config.get("REDIS_URL")
    if not url:
        return LocalBroker(ttl)
    return RedisBroker(
        ttl,
        url,
        config["REDIS_KEY_PREFIX"],
        config["CHAT_HEARTBEAT_SECONDS"],
        connections=config["REDIS_MAX_CONNECTIONS"],
        read_connections=config["REDIS_READ_CONNECTIONS"],
        writer_ttl=config["CHAT_WRITER_TTL_SECONDS"],
    )


def get_broker() -> LocalBroker:
    return current_app.extensions["broker"]


def init_app(app: Flask) -> None:
    app.extensions["broker"] = build(app.config)
