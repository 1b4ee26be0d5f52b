"""Bearer tokens checked without a database round trip while the answer cannot have changed.

A token names a user and the user's ``token_version`` when it was issued; "log out everywhere"
bumps the version, which revokes every token issued before (``security.py``). Checking that
used to read the user's row on every API request. This process now keeps the row it read, per
user, for ``AUTH_CACHE_SECONDS``, and a request whose token carries the cached version is let
in without a query.

Revocation stays immediate where it matters:

- **This process**: ``revoke_all_sessions`` drops the user's entry before it returns.
- **Every other process of this machine**: the revoking process appends the user's id to the
  revocation log, a small append-only file (``AUTH_REVOCATION_LOG``, in ``instance/`` by
  default). Before using its cache, each request ``stat``s that file (one system call, no
  read): when it has grown, the process reads just the new lines and drops those users. So a
  revoked token is refused by the very next request, whichever gunicorn worker takes it.
- **Other machines**, when ``REDIS_URL`` is set: the revoking process also publishes the user's
  id on a Redis pub/sub channel (``<REDIS_KEY_PREFIX>auth-revoked``, ``app/pubsub.py``); every
  process that caches tokens listens there (a thread started at its first token check) and
  drops the user as the message arrives, milliseconds after the commit.
- **Fallback**: without Redis, or while it is unreachable, other machines learn it when their
  entry expires: at most ``AUTH_CACHE_SECONDS`` (10 s by default) after the revocation. That is
  the bound this cache adds; ``AUTH_CACHE_SECONDS=0`` turns the cache off (every request reads
  the row again). A message sent while a listener was disconnected is lost, so each
  (re)subscription empties the cache and counts as a revocation (see ``generation``): nothing
  read before it is trusted after it.

A token whose version is *newer* than the cached one (the user logged out everywhere on another
machine and logged in again) is a miss: the row is read again. Only token checks use this cache;
session cookies are checked against their ``user_sessions`` row on every request as before.

Each request gets its own **detached** ``User`` built from the cached columns, never an instance
shared between requests: a service may attach it to its session (``author=user``) without
touching another request's.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import make_transient_to_detached

from app.models import User
from app.pubsub import Channel

log = logging.getLogger(__name__)

COLUMNS = tuple(column.key for column in User.__table__.columns)


@dataclass(frozen=True)
class _Entry:
    values: dict[str, Any]
    expires: float


class TokenUsers:
    """The per-process cache of users checked by token, and this machine's revocation log."""

    MAX_ENTRIES = 10_000  # beyond this, expired entries are dropped (all of them if need be)

    def __init__(
        self,
        ttl: float,
        log_path: str | Path,
        clock=time.monotonic,
        *,
        redis_url: str | None = None,
        channel: str = "prompthub:auth-revoked",
    ) -> None:
        self.ttl = ttl
        self.log_path = Path(log_path)
        self._clock = clock
        self._entries: dict[int, _Entry] = {}
        self._lock = threading.Lock()
        self._log_seen = self._log_size()  # revocations before this process started are in the rows
        # Counts the revocations this process has heard of. A row read before one of them may
        # be stale, so ``put`` keeps a row only if none arrived since its ``lookup``.
        self.generation = 0
        self.channel: Channel | None = None
        if redis_url:  # no connection until the first token check or revocation
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # One retry at once, not redis-py's default backoff: "log out everywhere" must not
            # wait 8-12 s on a Redis that is down (its revocation is in the log and the rows).
            client = redis.Redis.from_url(
                redis_url,
                socket_timeout=2,
                socket_connect_timeout=1,
                retry=Retry(NoBackoff(), 1),
            )
            self.channel = Channel(client, channel, self._heard, self._resubscribed)

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def _log_size(self) -> int:
        try:
            return os.stat(self.log_path).st_size
        except OSError:
            return 0

    def _catch_up(self) -> None:
        """Drop the users revoked by other processes since the last look (one ``stat`` when
        nothing changed)."""
        size = self._log_size()
        if size == self._log_seen:
            return
        with self._lock:
            if size == self._log_seen:  # another request of this process got here first
                return
            self.generation += 1
            if size < self._log_seen:  # the log was replaced: trust nothing cached
                self._entries.clear()
                self._log_seen = size
                return
            try:
                with open(self.log_path, "rb") as fh:
                    fh.seek(self._log_seen)
                    new = fh.read(size - self._log_seen)
            except OSError:
                self._entries.clear()
                return
            for line in new.split(b"\n"):
                if line.strip().isdigit():
                    self._entries.pop(int(line), None)
            self._log_seen = size

    def _heard(self, message: str) -> None:
        """A revocation published by any process of any machine (our own included)."""
        if not message.strip().isdigit():
            return
        with self._lock:
            self._entries.pop(int(message), None)
            self.generation += 1

    def _resubscribed(self) -> None:
        """The listener (re)subscribed: revocations sent while it was away are lost, so
        nothing cached before now is trusted (nor any row read before now, via generation)."""
        with self._lock:
            self._entries.clear()
            self.generation += 1

    def lookup(self, user_id: int, version: int) -> tuple[User | None, int]:
        """A detached ``User`` for a token of ``version`` when the cached row says it is
        current, else None (read the row); and the generation to hand to ``put``."""
        if not self.enabled:
            return None, self.generation
        if self.channel is not None:
            self.channel.listen()  # a no-op once it runs
        self._catch_up()
        generation = self.generation
        entry = self._entries.get(user_id)
        if entry is None or entry.expires <= self._clock():
            return None, generation
        if entry.values["token_version"] != version:
            # Older: revoked, which the row will say. Newer: revoked elsewhere and issued again
            # after this entry was read. Either way the row decides.
            return None, generation
        user = User(**entry.values)
        make_transient_to_detached(user)
        return user, generation

    def put(self, user: User, generation: int) -> None:
        """Keep the row just read, unless a revocation arrived since its ``lookup`` (it may
        have been read before that revocation was committed)."""
        if not self.enabled:
            return
        values = {key: getattr(user, key) for key in COLUMNS}
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) >= self.MAX_ENTRIES:  # memory stays bounded
                now = self._clock()
                self._entries = {k: e for k, e in self._entries.items() if e.expires > now}
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
            self._entries[user.id] = _Entry(values, self._clock() + self.ttl)

    def revoke(self, user_id: int) -> None:
        """After a user's tokens were revoked (committed): forget the user here, tell every
        process of every machine through Redis when it is set, and the other processes of this
        machine through the log (which also covers a Redis outage here)."""
        with self._lock:
            self._entries.pop(user_id, None)
            self.generation += 1
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{int(user_id)}\n".encode())  # one append: never interleaved
            finally:
                os.close(fd)
        except OSError as exc:  # the other processes learn it when their entries expire
            log.error("revocation log %s not written: %s", self.log_path, exc)
        # After the log: a Redis that hangs (up to its 1 s connect timeout) never delays it.
        if self.channel is not None and not self.channel.publish(str(int(user_id))):
            log.error(
                "revocation of user %s not published (Redis unavailable): other machines "
                "refuse the old tokens within AUTH_CACHE_SECONDS",
                user_id,
            )

    def shutdown(self) -> None:
        """Stop the revocation listener and close its connections (tests build one per app)."""
        if self.channel is not None:
            self.channel.close()
            self.channel.redis.close()
