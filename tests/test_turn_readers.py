"""Readers of turn events are bounded (issue 26, findings 1 and 5): open readers capped per user
and per turn (429 beyond, counted across processes with Redis), attaching counted in the rate
limits, slots given back when a response closes, Redis reading connections pooled and bounded,
and a finished turn answered at once whatever the reader's ``Last-Event-ID``. On both brokers
(in-process and Redis Streams on the real Redis), against the fake provider."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from contextlib import ExitStack, closing, contextmanager

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app import create_app
from app.chat import replies
from app.chat import start as start_turn
from app.chat.broker import RedisBroker
from app.chat.readers import ReaderGate, TooManyReaders
from app.extensions import db
from app.models import User
from tests.conftest import base_config
from tests.factories import make_project, make_user
from tests.sse import parse_sse, read_stream, turn_id_of
from tools.servers import in_thread

REDIS = os.environ.get("TEST_BROKER_REDIS_URL", "redis://127.0.0.1:6379/11")


def settings(fake, *, redis: bool, **extra) -> dict:
    """Fast heartbeats against the fake provider; with ``redis``, a Redis prefix of its own."""
    fast = {"CHAT_HEARTBEAT_SECONDS": 0.2, "CHAT_RESUME_POLL_SECONDS": 0.05}
    found = fake.app_config(openrouter=False, **{**fast, **extra})
    if redis:
        found |= {"REDIS_URL": REDIS, "REDIS_KEY_PREFIX": f"test-{uuid.uuid4().hex[:10]}:"}
    return found


@pytest.fixture(params=["memory", "redis"])
def config_overrides(request, fake):
    return settings(
        fake, redis=request.param == "redis", TURN_READERS_PER_USER=3, TURN_READERS_PER_TURN=2
    )


@pytest.fixture(autouse=True)
def _reset(fake):
    fake.reset()


def live_turn(app, owner_id: int, project_id: int) -> int:
    """A turn that stays ``streaming`` (no process generates it): its readers wait."""
    with app.app_context():
        user = db.session.get(User, owner_id)
        return start_turn.send(user=user, project_id=project_id, message="Hi").reply_id


class Readers:
    """Open readers over HTTP, each on its own connection, until ``close``."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.open: list[tuple[httpx.Client, httpx.Response]] = []

    def attach(self, token: str, turn_id: int, after: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if after is not None:
            headers["Last-Event-ID"] = after
        client = httpx.Client(trust_env=False, timeout=10)
        request = client.build_request(
            "GET", f"{self.base}/api/turns/{turn_id}/events", headers=headers
        )
        resp = client.send(request, stream=True)
        self.open.append((client, resp))
        return resp

    def leave(self, resp: httpx.Response) -> None:
        for client, held in self.open:
            if held is resp:
                held.close()
                client.close()

    def close(self) -> None:
        for client, resp in self.open:
            resp.close()
            client.close()


@pytest.fixture
def readers(live_server):
    made = Readers(live_server)
    yield made
    made.close()


def eventually_ok(readers: Readers, token: str, turn_id: int) -> httpx.Response:
    """The server notices a reader that left at its next write (a keep-alive): retry a while."""
    deadline = time.monotonic() + 10
    while True:
        resp = readers.attach(token, turn_id)
        if resp.status_code != 429 or time.monotonic() > deadline:
            return resp
        readers.leave(resp)
        time.sleep(0.1)


def test_readers_beyond_the_per_user_cap_are_429_and_another_user_reads_on(app, readers, owner):
    project = make_project(app, owner)
    turns = [live_turn(app, owner.id, project) for _ in range(3)]
    held = [readers.attach(owner.token, t) for t in turns]
    assert [r.status_code for r in held] == [200, 200, 200]

    refused = readers.attach(owner.token, live_turn(app, owner.id, project))
    assert refused.status_code == 429
    assert refused.headers["Retry-After"].isdigit()
    error = json.loads(refused.read())["error"]
    assert error["code"] == "too_many_readers" and "3" in error["message"]

    eve = make_user(app, email="eve@example.com")
    theirs = readers.attach(eve.token, live_turn(app, eve.id, make_project(app, eve)))
    assert theirs.status_code == 200

    readers.leave(held[0])  # a reader leaves: its slot is free again
    assert eventually_ok(readers, owner.token, turns[0]).status_code == 200


def test_readers_beyond_the_per_turn_cap_are_429(app, readers, owner):
    project = make_project(app, owner)
    turn, other = live_turn(app, owner.id, project), live_turn(app, owner.id, project)
    held = [readers.attach(owner.token, turn) for _ in range(2)]
    assert [r.status_code for r in held] == [200, 200]
    assert readers.attach(owner.token, turn).status_code == 429
    assert readers.attach(owner.token, other).status_code == 200  # the user's cap is 3


def test_a_reader_that_leaves_before_the_first_byte_gives_its_slot_back(app, client, owner):
    """The response is closed without its body ever being read (a generator's ``finally``
    would never run): the slot still comes back."""
    project = make_project(app, owner)
    turn = live_turn(app, owner.id, project)
    for _ in range(5):  # more than either cap, one after the other
        resp = client.get(f"/api/turns/{turn}/events", headers=owner.headers, buffered=False)
        assert resp.status_code == 200
        resp.close()


def test_a_turn_stored_before_its_last_event_is_published_is_read_to_that_event(app, client, owner):
    """The generating process stores the reply, then publishes ``done``: a reader attaching in
    between finds the row finished and the broker without its end. It gets the events the
    broker has, then that ``done`` (not the stored outcome alone)."""
    project = make_project(app, owner)
    with app.app_context():
        user = db.session.get(User, owner.id)
        turn = start_turn.send(user=user, project_id=project, message="Hi")
        broker = app.extensions["broker"]
        broker.open(turn.reply_id)
        broker.publish(turn.reply_id, "start", {"turn_id": turn.reply_id})
        broker.publish(turn.reply_id, "delta", {"text": "Hello"})
        replies.finish(
            turn.reply_id, turn.conversation_id, {"content": "Hello", "status": "complete"}
        )

    def publish_the_end():
        broker.publish(turn.reply_id, "done", {"message": {"content": "Hello"}, "stored": True})
        broker.close(turn.reply_id)

    timer = threading.Timer(0.3, publish_the_end)
    timer.start()
    body = client.get(f"/api/turns/{turn.reply_id}/events", headers=owner.headers)
    timer.join()
    assert [name for name, _ in parse_sse(body.get_data(as_text=True))[0]] == [
        "start",
        "delta",
        "done",
    ]


@pytest.mark.parametrize("after", ["", "0-", "abc"])
def test_an_empty_or_bad_after_is_422(app, client, owner, after):
    project = make_project(app, owner)
    turn = live_turn(app, owner.id, project)
    resp = client.get(f"/api/turns/{turn}/events?after={after}", headers=owner.headers)
    assert resp.status_code == 422
    assert "after" in resp.get_json()["error"]["fields"]


# --- across processes, with Redis ------------------------------------------------------------


@contextmanager
def another_process(app, config_overrides):
    """A second app on the same database and Redis: another process, or another machine."""
    other = create_app(base_config(app.config["SQLALCHEMY_DATABASE_URI"], **config_overrides))
    try:
        yield other
    finally:
        other.extensions["broker"].shutdown()
        other.extensions["token_users"].shutdown()
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


class TestAcrossProcesses:
    """Two apps (two processes, or two machines) sharing one Redis share one count."""

    @pytest.fixture
    def config_overrides(self, fake):
        return settings(fake, redis=True, TURN_READERS_PER_USER=2)

    def test_the_caps_count_across_processes_with_redis(self, app, owner, config_overrides):
        project = make_project(app, owner)
        turns = [live_turn(app, owner.id, project) for _ in range(3)]
        with ExitStack() as stack:
            second = stack.enter_context(another_process(app, config_overrides))
            on_first = stack.enter_context(closing(Readers(stack.enter_context(in_thread(app)))))
            on_second = stack.enter_context(
                closing(Readers(stack.enter_context(in_thread(second))))
            )
            held = on_first.attach(owner.token, turns[0])
            assert held.status_code == 200
            assert on_second.attach(owner.token, turns[1]).status_code == 200
            assert on_second.attach(owner.token, turns[2]).status_code == 429
            on_first.leave(held)
            assert eventually_ok(on_second, owner.token, turns[2]).status_code == 200


class TestFinishedElsewhere:
    """A finished turn read from another process (Redis holds its stream, or no longer does) is
    answered at once, whatever the reader's Last-Event-ID (findings 1 and 5): the heartbeat is
    long here, and a reader that waited for it would time out."""

    @pytest.fixture
    def config_overrides(self, fake):
        return settings(fake, redis=True, CHAT_HEARTBEAT_SECONDS=10, TURN_EVENTS_TTL_SECONDS=5)

    def test_a_finished_turn_is_answered_at_once(self, app, client, owner, config_overrides):
        project = make_project(app, owner)
        raw = read_stream(
            client.post(
                f"/api/projects/{project}/chat",
                json={"message": "Hi", "stream": True},
                headers=owner.headers,
                buffered=False,
            )
        )
        turn, stored = turn_id_of(raw), parse_sse(raw)[0][-1]
        assert stored[0] == "done"
        with (
            another_process(app, config_overrides) as elsewhere,
            in_thread(elsewhere) as base,
        ):
            broker = elsewhere.extensions["broker"]
            for after, in_redis in [("0-999", True), ("0-1", True), (None, True), (None, False)]:
                if not in_redis:
                    broker.redis.delete(broker.key(turn))  # expired meanwhile
                headers = {"Authorization": f"Bearer {owner.token}"}
                if after:
                    headers["Last-Event-ID"] = after
                body = httpx.get(
                    f"{base}/api/turns/{turn}/events", headers=headers, timeout=3, trust_env=False
                ).text
                assert ": keep-alive" not in body
                events = parse_sse(body)[0]
                assert events[-1] == stored  # the same outcome, in full


def _gate(client, lease=0.5) -> ReaderGate:
    return ReaderGate(
        per_user=1,
        per_turn=1,
        lease=lease,
        redis=client,
        prefix=f"test-{uuid.uuid4().hex[:10]}:",
        errors=(redis.RedisError, OSError),
    )


def test_a_slot_whose_process_died_frees_itself_after_its_lease():
    client = redis.Redis.from_url(REDIS)
    gate = _gate(client)
    gate.acquire(1, 10)  # never released: its process "died"
    with pytest.raises(TooManyReaders):
        gate.acquire(1, 11)
    time.sleep(0.7)
    gate.acquire(1, 11).release()
    client.close()


def test_while_redis_is_out_of_reach_readers_are_counted_per_process(caplog):
    client = redis.Redis(host="127.0.0.1", port=9, retry=Retry(NoBackoff(), 0))
    gate = _gate(client)
    slot = gate.acquire(1, 10)
    with pytest.raises(TooManyReaders):
        gate.acquire(1, 11)
    slot.release()
    gate.acquire(1, 11).release()
    gate._retry_at = 0  # the pause is over: Redis is tried again, still away
    gate.acquire(1, 12).release()
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per reader


def _readers_of(control: redis.Redis, prefix: str) -> list[dict]:
    """This test's reader connections, by their client name: other tests (another xdist
    worker, another checkout) may use the same Redis database at the same time."""
    return [c for c in control.client_list() if c["name"] == f"{prefix}turn-reader"]


def test_blocking_reads_use_a_bounded_pool_of_redis_connections():
    """Eight readers of another process's quiet turn: at most ``read_connections`` of them hold
    a Redis connection (the others read the database), and no more stay open afterwards."""
    control = redis.Redis.from_url(REDIS)
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    writer = RedisBroker(60, REDIS, prefix)
    writer.open(5)
    writer.publish(5, "start", {})
    reader = RedisBroker(60, REDIS, prefix, longest_wait=3, read_connections=2)
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(reader.read(5, "0-1", timeout=2)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # every reader is waiting now
    during = len(_readers_of(control, prefix))
    for thread in threads:
        thread.join()
    named = _readers_of(control, prefix)
    assert during <= 2, during  # all connections, while they wait
    assert len(named) <= 2, named  # afterwards: the pool keeps what it opened, no more
    assert results.count([]) == 2 and results.count(None) == 6
    writer.redis.delete(writer.key(5))
    for broker in (writer, reader):
        broker.shutdown()
    control.close()
