"""How many readers of turn events (``GET /api/turns/<id>/events``) may be open at once.

A reader holds a connection for as long as its turn runs, and a reader whose ``Last-Event-ID``
is past the turn's last event would wait to the end: without a cap one account could hold every
connection a server has (issue 26: 2,100 idle readers from one account timed out everyone
else). So each reader takes a **slot** before its stream starts, and gives it back when the
response closes:

- at most ``TURN_READERS_PER_USER`` slots per user, and ``TURN_READERS_PER_TURN`` per turn;
  beyond either, ``TooManyReaders`` (429 with ``Retry-After``). The page opens one reader per
  lost connection, Compare one per column, so the defaults leave a person with many tabs room;
- counted across every process and machine when Redis is configured (``REDIS_URL``): a sorted
  set per user and per turn, members = slot ids, scores = when the slot expires. A slot is
  a lease (``lease`` seconds, renewed by its reader about once a heartbeat), so the slots of a
  process that died free themselves; one Lua script checks both counts and adds the slot
  atomically;
- in this process only without Redis (the embedded default: one process), and while Redis
  cannot be reached (a warning is logged once per outage, not once per reader).

The slot is released by ``Response.call_on_close``: WSGI servers close every response, also one
whose client left before the body began (a generator's ``finally`` would not run then).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from flask import Flask, current_app

from app.errors import AppError

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
OUTAGE_PAUSE_S = 5.0  # after a Redis failure, count in this process this long before retrying

# KEYS: the user's set, the turn's set. ARGV: now, expiry, slot id, user cap, turn cap, key TTL.
# 0: added; 1: the user has too many; 2: the turn has too many.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 2 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 0
"""


class TooManyReaders(AppError):
    status, code = 429, "too_many_readers"


@dataclass
class Slot:
    """One reader's place; ``renew`` keeps it while the reader reads, ``release`` frees it."""

    gate: ReaderGate
    id: str
    user_id: int
    turn_id: int
    shared: bool  # counted in Redis (else in this process)
    renewed: float = field(default_factory=time.monotonic)
    released: bool = False

    def renew(self) -> None:
        """Cheap to call on every event: it talks to Redis at most once per ``renew_every``."""
        now = time.monotonic()
        if self.shared and now - self.renewed >= self.gate.renew_every:
            self.renewed = now
            self.gate._renew_shared(self)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate._release(self)


class ReaderGate:
    def __init__(
        self,
        *,
        per_user: int,
        per_turn: int,
        lease: float,
        redis=None,
        prefix: str = "",
        errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.per_user = per_user
        self.per_turn = per_turn
        self.lease = lease
        self.renew_every = lease / 3
        self.redis = redis
        self.prefix = prefix
        self._errors = errors
        self._acquire = redis.register_script(_ACQUIRE) if redis is not None else None
        self._lock = threading.Lock()
        self._users: dict[int, int] = {}
        self._turns: dict[int, int] = {}
        self._outage = False
        self._retry_at = 0.0

    def _keys(self, user_id: int, turn_id: int) -> tuple[str, str]:
        return f"{self.prefix}readers:user:{user_id}", f"{self.prefix}readers:turn:{turn_id}"

    def acquire(self, user_id: int, turn_id: int) -> Slot:
        """A slot for a reader of ``turn_id`` by ``user_id``, else ``TooManyReaders``."""
        shared = self.redis is not None and time.monotonic() >= self._retry_at
        slot = Slot(self, uuid.uuid4().hex, user_id, turn_id, shared=shared)
        if slot.shared:
            try:
                refused = self._acquire_shared(slot)
                self._outage_over()
            except self._errors as exc:
                self._outage_began(exc)
                slot.shared = False
            else:
                if refused:
                    raise self._refusal(refused)
                return slot
        self._acquire_local(slot)
        return slot

    def _refusal(self, which: int) -> TooManyReaders:
        if which == 1:
            message = (
                f"You have {self.per_user} replies open for reading already: close one "
                "(another tab or window) and try again."
            )
        else:
            message = f"This reply has {self.per_turn} readers already: close one and try again."
        return TooManyReaders(message, headers={"Retry-After": str(RETRY_AFTER_S)})

    # -- this process ---------------------------------------------------------------------

    def _acquire_local(self, slot: Slot) -> None:
        with self._lock:
            if self._users.get(slot.user_id, 0) >= self.per_user:
                raise self._refusal(1)
            if self._turns.get(slot.turn_id, 0) >= self.per_turn:
                raise self._refusal(2)
            self._users[slot.user_id] = self._users.get(slot.user_id, 0) + 1
            self._turns[slot.turn_id] = self._turns.get(slot.turn_id, 0) + 1

    def _release_local(self, slot: Slot) -> None:
        with self._lock:
            for counts, key in ((self._users, slot.user_id), (self._turns, slot.turn_id)):
                left = counts.get(key, 0) - 1
                if left > 0:
                    counts[key] = left
                else:
                    counts.pop(key, None)

    # -- Redis ----------------------------------------------------------------------------

    def _acquire_shared(self, slot: Slot) -> int:
        now = time.time()
        return int(
            self._acquire(
                keys=self._keys(slot.user_id, slot.turn_id),
                args=[
                    now,
                    now + self.lease,
                    slot.id,
                    self.per_user,
                    self.per_turn,
                    int(self.lease) + 1,
                ],
            )
        )

    def _renew_shared(self, slot: Slot) -> None:
        expiry = time.time() + self.lease
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key in self._keys(slot.user_id, slot.turn_id):
                pipe.zadd(key, {slot.id: expiry}, xx=True)
                pipe.expire(key, int(self.lease) + 1)
            pipe.execute()
        except self._errors as exc:
            self._outage_began(exc)  # the lease runs out by itself: the cap errs on the open side

    def _release(self, slot: Slot) -> None:
        if not slot.shared:
            self._release_local(slot)
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key in self._keys(slot.user_id, slot.turn_id):
                pipe.zrem(key, slot.id)
            pipe.execute()
        except self._errors as exc:
            self._outage_began(exc)  # its lease frees it

    def _outage_began(self, exc: BaseException) -> None:
        # Redis is tried again after a pause, not by every reader meanwhile.
        self._retry_at = time.monotonic() + OUTAGE_PAUSE_S
        if not self._outage:
            self._outage = True
            log.warning(
                "turn readers: Redis unavailable (%s); counting readers per process until it is "
                "back",
                exc,
            )

    def _outage_over(self) -> None:
        if self._outage:
            self._outage = False
            log.warning("turn readers: Redis is back; counting readers across processes again")


def build(config, redis=None, errors: tuple[type[BaseException], ...] = ()) -> ReaderGate:
    heartbeat = float(config["CHAT_HEARTBEAT_SECONDS"])
    return ReaderGate(
        per_user=config["TURN_READERS_PER_USER"],
        per_turn=config["TURN_READERS_PER_TURN"],
        # Renewed about once a heartbeat (a reader yields at least that often), with room for
        # two missed renewals before another process may take the slot.
        lease=max(3 * heartbeat, 1.0) + 5,
        redis=redis,
        prefix=config["REDIS_KEY_PREFIX"],
        errors=errors,
    )


def get_gate() -> ReaderGate:
    return current_app.extensions["turn_readers"]


def init_app(app: Flask, broker) -> None:
    """The gate shares the broker's Redis connections (their short timeouts) when there are
    any, without redis-py's retries: a reader is counted in this process at once rather than
    after seconds of backoff while Redis is away."""
    client, errors = None, getattr(broker, "errors", ())
    if getattr(broker, "redis", None) is not None:
        from redis import Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = Redis(connection_pool=broker.redis.connection_pool, retry=Retry(NoBackoff(), 0))
    app.extensions["turn_readers"] = build(app.config, client, errors)
