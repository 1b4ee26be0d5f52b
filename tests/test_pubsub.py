"""The shared Redis pub/sub listener (``app/pubsub.py``) that carries Stop and token
revocations, against the real Redis (``TEST_BROKER_REDIS_URL``'s server, a channel per test)."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import redis

from app.pubsub import POLL_SECONDS, Channel

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
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    assert Channel(unreachable, "nowhere", lambda _: None).publish("1") is False
    unreachable.close()
