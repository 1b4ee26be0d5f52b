"""The turn broker's contract, run on both backends: in-process, and Redis Streams on the real
Redis (``TEST_REDIS_URL``'s server, database 11, a key prefix per test). A second broker object
plays another process: it shares only Redis."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from app.chat.broker import LocalBroker, RedisBroker

REDIS = os.environ.get("TEST_BROKER_REDIS_URL", "redis://127.0.0.1:6379/11")


@pytest.fixture(params=["memory", "redis"])
def make(request):
    """Build brokers of the backend under test; Redis ones share one prefix (one deployment)."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    made = []

    def build(ttl: float = 60):
        broker = LocalBroker(ttl) if request.param == "memory" else RedisBroker(ttl, REDIS, prefix)
        made.append(broker)
        return broker

    yield build
    for broker in made:
        if isinstance(broker, RedisBroker):
            for key in broker.redis.scan_iter(f"{prefix}*"):
                broker.redis.delete(key)
        broker.shutdown()


def test_readers_get_what_follows_their_last_id(make):
    broker = make()
    broker.open(7)
    ids = [broker.publish(7, "delta", {"text": t}).id for t in "abc"]
    assert ids == ["0-1", "0-2", "0-3"]
    assert [e.data["text"] for e in broker.read(7, None, 0.1)] == ["a", "b", "c"]
    assert [e.data["text"] for e in broker.read(7, "0-2", 0.1)] == ["c"]
    assert broker.read(7, "0-3", 0.05) == []  # nothing new yet: an empty wait


def test_a_reader_waits_for_the_next_event(make):
    broker = make()
    broker.open(8)
    threading.Timer(0.1, lambda: broker.publish(8, "delta", {"text": "late"})).start()
    started = time.monotonic()
    entries = broker.read(8, None, timeout=5)
    assert [e.data for e in entries] == [{"text": "late"}]
    assert time.monotonic() - started < 4  # woken by the event, not by the timeout


def test_an_unknown_turn_is_none(make):
    assert make().read(404, None, 0.05) is None


def test_after_the_end_a_closed_turn_answers_none(make):
    broker = make()
    broker.open(9)
    broker.publish(9, "done", {"message": {}})
    broker.close(9)
    assert [e.event for e in broker.read(9, None, 0.05)] == ["done"]
    assert broker.read(9, "0-1", 0.05) is None  # the database answers from here


def test_stop_reaches_the_handlers(make):
    broker = make()
    stopped: list[int] = []
    broker.on_stop(stopped.append)
    broker.stop(5)
    assert stopped[:1] == [5]


def test_local_logs_expire_after_their_turn_ends():
    broker = LocalBroker(ttl=0)
    broker.open(1)
    broker.close(1)
    broker.open(2)  # opening a turn purges the expired ones
    assert broker.read(1, None, 0.01) is None


# --- Redis: another process sees the same turn -----------------------------------------------


@pytest.fixture
def redis_pair():
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    here, there = RedisBroker(60, REDIS, prefix), RedisBroker(60, REDIS, prefix)
    yield here, there
    for key in here.redis.scan_iter(f"{prefix}*"):
        here.redis.delete(key)
    here.shutdown()
    there.shutdown()


def test_another_process_reads_the_same_events_with_the_same_ids(redis_pair):
    here, there = redis_pair
    here.open(3)
    for text in ("a", "b"):
        here.publish(3, "delta", {"text": text})
    seen = there.read(3, None, 0.5)
    assert [(e.id, e.data["text"]) for e in seen] == [("0-1", "a"), ("0-2", "b")]
    threading.Timer(0.1, lambda: here.publish(3, "done", {"message": {}})).start()
    assert [(e.id, e.event) for e in there.read(3, "0-2", 5)] == [("0-3", "done")]
    ttl = here.redis.ttl(here.key(3))
    assert 0 < ttl <= 60  # the stream goes away on its own


def test_a_quiet_wait_longer_than_the_write_timeout_is_not_an_error(redis_pair):
    """Readers elsewhere block in XREAD for up to a heartbeat (15 s by default), longer than
    the 2 s timeout of writes: a quiet wait must end empty, not as a Redis error (which would
    send the reader to the database)."""
    here, there = redis_pair
    here.open(6)
    here.publish(6, "delta", {"text": "a"})
    assert there.read(6, "0-1", timeout=2.5) == []


def test_stop_travels_to_the_process_running_the_turn(redis_pair):
    here, there = redis_pair
    stopped = threading.Event()
    here.on_stop(lambda turn_id: turn_id == 12 and stopped.set())
    here.open(12)  # a process that runs turns listens for their Stop
    deadline = time.monotonic() + 5
    while not stopped.is_set() and time.monotonic() < deadline:
        there.stop(12)  # until the listener has subscribed
        stopped.wait(0.2)
    assert stopped.is_set()


def test_an_event_about_a_dead_process_turn_comes_after_its_own(redis_pair):
    here, there = redis_pair
    here.open(4)
    here.publish(4, "delta", {"text": "half"})
    there.publish_elsewhere(4, "error", {"error": {"code": "interrupted"}})
    entries = there.read(4, "0-1", 0.5)
    assert [e.event for e in entries] == ["error"]
    assert entries[0].id > "0-1"
    there.publish_elsewhere(99, "error", {})  # no stream: nobody reads it, nothing is created
    assert not there.redis.exists(there.key(99))


def test_redis_out_of_reach_never_stops_a_turn():
    broker = RedisBroker(60, "redis://127.0.0.1:9/0", "test-down:")  # nothing listens on 9
    broker.open(1)
    assert broker.publish(1, "delta", {"text": "still here"}).id == "0-1"
    assert [e.data["text"] for e in broker.read(1, None, 0.1)] == ["still here"]  # local reader
    assert broker.status() == {"backend": "redis", "redis": "unavailable"}
    other = RedisBroker(60, "redis://127.0.0.1:9/0", "x:")
    assert other.read(1, None, 0.1) is None
    broker.shutdown()
    other.shutdown()


@pytest.mark.server
def test_an_outage_is_logged_once_not_once_per_turn_and_its_end_once(caplog):
    """Twenty turns publishing and a reader of another process's turn while Redis is stopped:
    one warning; when it is back (the same port), one line says so."""
    from tools.servers import PrivateRedis

    server = PrivateRedis().start()
    broker = RedisBroker(60, server.url, "test-outage:")
    try:
        broker.publish_elsewhere(0, "delta", {})  # connected before the outage
        caplog.set_level("INFO", logger="app.chat.broker")
        server.stop()
        for turn_id in range(1, 21):
            broker.open(turn_id)
            broker.publish(turn_id, "delta", {"text": "x"})
            broker.close(turn_id)
        assert broker.read(999, None, 0) is None  # another process's turn: read the database
        server.start()
        broker.open(21)
        broker.publish(21, "delta", {"text": "back"})
        assert [e.data["text"] for e in broker.read(21, None, 0)] == ["back"]
    finally:
        broker.shutdown()
        server.stop()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "app.chat.broker"]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert lines[0][1].startswith("Redis unavailable (") and "at turn 1;" in lines[0][1]
    assert lines[1][1] == "Redis reachable again"


def test_ended_turns_kept_in_memory_are_bounded():
    broker = LocalBroker(ttl=600)
    broker.KEEP_ENDED = 3
    for turn_id in range(1, 6):
        broker.open(turn_id)
        broker.close(turn_id)
    broker.open(99)
    assert [t for t in range(1, 6) if broker.is_local(t)] == [3, 4, 5]
    assert broker.is_local(99)  # running turns are never dropped


# --- the text readers were shown, and the writer heartbeat (issue 27) -------------------------


def test_the_broker_gives_the_text_of_a_turns_deltas(make):
    here = make()
    here.open(8)
    assert here.text(8) == ""
    here.publish(8, "start", {"turn_id": 8})
    for text in ("Hel", "lo"):
        here.publish(8, "delta", {"text": text})
    here.publish(8, "done", {"message": {}})
    assert here.text(8) == "Hello"
    assert here.text(404) is None  # a turn it does not hold
    assert here.writer_gone(8) is False  # its own turn


def test_another_process_reads_a_turns_text_and_sees_its_writer_die():
    """The writer names itself in the turn's ``start`` entry and renews its heartbeat key; once
    it stops (a dead process: the key is not renewed), a reader elsewhere finds it gone within
    the TTL."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    here = RedisBroker(60, REDIS, prefix, writer_ttl=0.6)
    there = RedisBroker(60, REDIS, prefix, writer_ttl=0.6)
    try:
        here.open(9)
        here.publish(9, "start", {"turn_id": 9})
        here.publish(9, "delta", {"text": "every word"})
        assert there.text(9) == "every word"
        time.sleep(1.0)  # longer than the TTL: renewed meanwhile
        assert there.writer_gone(9) is False
        here.shutdown()  # the heartbeat stops, as in a process that died
        deadline = time.monotonic() + 5
        while not there.writer_gone(9):
            assert time.monotonic() < deadline, "the writer's death was not seen"
            time.sleep(0.05)
        assert there.writer_gone(404) is False  # a turn nobody names: unknown, not dead
    finally:
        for key in there.redis.scan_iter(f"{prefix}*"):
            there.redis.delete(key)
        there.shutdown()


@pytest.mark.server
def test_a_redis_restarted_empty_is_not_a_dead_writer():
    """Redis restarts empty: the heartbeat key is gone until the writer's next renewal, and so is
    the turn's stream. A reader that knew the writer must not call it dead in that window."""
    from tools.servers import PrivateRedis

    server = PrivateRedis().start()
    here = RedisBroker(60, server.url, "restart:", writer_ttl=30)  # renewed every 10 s
    there = RedisBroker(60, server.url, "restart:", writer_ttl=30)
    try:
        here.open(5)
        here.publish(5, "start", {"turn_id": 5})
        assert there.writer_gone(5) is False  # the writer is known to ``there`` now
        server.stop()
        server.start()  # the same port, nothing in it
        assert there.writer_gone(5) is False
    finally:
        here.shutdown()
        there.shutdown()
        server.stop()
