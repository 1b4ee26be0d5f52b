"""One Redis pub/sub channel shared by every process and machine: publish, and listen in a
background thread that outlives Redis outages.

Used for messages that must reach every process at once and may be lost while Redis is down,
because the receiver has a fallback: Stop for a running turn (``chat/broker.py``) and "log
out everywhere" for the token cache (``auth/token_cache.py``). Not a queue: a process that is
not subscribed when a message is sent never sees it. So the listener reports each (re)subscribe
(``on_subscribe``): a receiver that keeps state derived from the messages drops it there,
since it may have missed some while it was away.

The listener is one daemon thread (a greenlet under gevent), started on first need
(``listen``), never in the app factory: a process that never needs the channel opens no
connection. It reconnects every ``RETRY_SECONDS`` while Redis is away, logging once per
outage (a warning when it begins, an info line when the channel is subscribed again), and
``close`` stops it within ``POLL_SECONDS``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
POLL_SECONDS = 0.25  # one wait for a message: ``close`` is noticed this fast (idle: 4 polls/s)


class Channel:
    def __init__(
        self,
        redis_client,
        name: str,
        on_message: Callable[[str], None],
        on_subscribe: Callable[[], None] | None = None,
    ) -> None:
        import redis

        self.redis = redis_client
        self.name = name
        self._on_message = on_message
        self._on_subscribe = on_subscribe
        self._errors = (redis.RedisError, OSError)
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self._closing = threading.Event()
        self.subscribed = threading.Event()  # set while the listener holds a subscription

    def publish(self, message: str) -> bool:
        """Send ``message`` to every subscriber; False (logged by the caller) when Redis is
        unavailable."""
        try:
            self.redis.publish(self.name, message)
        except self._errors:
            return False
        return True

    def listen(self) -> None:
        """Start the listener unless it runs (cheap to call on every use)."""
        if self._thread is not None or self._closing.is_set():
            return
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        away = False  # in an outage already logged
        while not self._closing.is_set():
            pubsub = None
            try:
                pubsub = self.redis.pubsub()
                pubsub.subscribe(self.name)
                while not self._closing.is_set():
                    message = pubsub.get_message(timeout=POLL_SECONDS)
                    if not message:
                        continue
                    if message.get("type") == "subscribe":
                        self.subscribed.set()
                        if away:
                            away = False
                            log.info("%s listener: Redis reachable again", self.name)
                        if self._on_subscribe is not None:
                            self._deliver(self._on_subscribe)
                    elif message.get("type") == "message":
                        data = message["data"]
                        text = data.decode() if isinstance(data, bytes) else str(data)
                        self._deliver(self._on_message, text)
            except (*self._errors, ValueError) as exc:  # ValueError: closed under our feet
                self.subscribed.clear()
                if self._closing.is_set():
                    return
                if not away:
                    away = True
                    log.warning("%s listener: Redis unavailable (%s); retrying", self.name, exc)
                self._closing.wait(RETRY_SECONDS)
            finally:
                self.subscribed.clear()
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (*self._errors, ValueError):
                        pass

    def _deliver(self, handler: Callable, *args) -> None:
        """Run a receiver's handler; its failure is logged and never ends the listener (a
        dead listener would be silent: every later message lost)."""
        try:
            handler(*args)
        except Exception:
            log.exception("%s listener: a handler failed", self.name)

    def close(self) -> None:
        """Stop the listener (tests build one per app; a process exiting needs nothing)."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=POLL_SECONDS + 4)
