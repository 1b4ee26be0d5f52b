"""The shared Redis pub/sub listener (``app/pubsub.py``) that carries Stop and token
revocations, against the real Redis (``TEST_BROKER_REDIS_URL``'s server, a channel per test)."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.pubsub import POLL_SECONDS, RETRY_SECONDS, Channel

REDIS = os.environ.get("TEST_BROKER_REDIS_URL", "redis://127.0.0.1:6379/11")


@pytest.fixture
def client():
    connection = redis.Redis.from_url(REDIS)
    yield connection
    connection.close()


def wait_for(condition, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_messages_reach_the_listener_and_close_stops_it_promptly(client):
    heard, subscribed = [], []
    channel = Channel(client, f"t{uuid.uuid4().hex}:c", heard.append, lambda: subscribed.append(1))
    channel.listen()
    channel.listen()  # once running, a no-op
    assert channel.subscribed.wait(5)
    assert subscribed == [1]
    assert channel.publish("7") and channel.publish("8")
    wait_for(lambda: heard == ["7", "8"])
    start = time.monotonic()
    channel.close()
    assert time.monotonic() - start < POLL_SECONDS + 0.5
    assert not channel._thread.is_alive()


def test_a_failing_handler_does_not_end_the_listener(client):
    heard = []

    def handler(message: str) -> None:
        heard.append(message)
        if message == "boom":
            raise RuntimeError("a receiver's bug")

    channel = Channel(client, f"t{uuid.uuid4().hex}:c", handler)
    channel.listen()
    assert channel.subscribed.wait(5)
    channel.publish("boom")
    channel.publish("after")
    wait_for(lambda: heard == ["boom", "after"])  # still listening
    channel.close()


def test_publishing_without_redis_answers_false():
    # No retries: redis-py's default (three, backing off up to 10 s) made this take 8-12 s.
    unreachable = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    assert Channel(unreachable, "nowhere", lambda _: None).publish("1") is False
    unreachable.close()


@pytest.mark.server
def test_an_outage_is_logged_once_and_the_listener_subscribes_again(caplog):
    """Three reconnection attempts while Redis is stopped: one warning, then one line when the
    channel is back (not one per attempt: an outage must not flood the log)."""
    from tools.servers import PrivateRedis

    server = PrivateRedis().start()
    connection = redis.Redis.from_url(server.url)
    heard, subscribes = [], []
    channel = Channel(connection, "outage", heard.append, lambda: subscribes.append(1))
    try:
        channel.listen()
        assert channel.subscribed.wait(5)
        caplog.set_level("INFO", logger="app.pubsub")
        server.stop()
        wait_for(lambda: not channel.subscribed.is_set())
        time.sleep(2.5 * RETRY_SECONDS)  # three attempts fail
        server.start()  # the same port
        wait_for(lambda: len(subscribes) == 2, seconds=3 * RETRY_SECONDS)
        assert channel.publish("back")
        wait_for(lambda: heard == ["back"])
    finally:
        channel.close()
        connection.close()
        server.stop()
    lines = [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert lines == [
        ("WARNING", "outage listener: Redis unavailable"),
        ("INFO", "outage listener: Redis reachable again"),
    ]
