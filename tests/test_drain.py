"""Interrupted replies keep the text their readers saw, and a process told to stop drains its
turns (``app/chat/drain.py``), in this process on the embedded broker. The same through real
gunicorn servers and Redis: ``tests/test_turn_faults.py``; in ``make cluster``:
``tests/test_cluster.py``."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, update

from app.chat import drain, replies, turns
from app.chat import start as start_turn
from app.extensions import db
from app.models import Message, User
from app.models.base import utcnow
from tests.factories import make_project
from tools.fake_provider import Scenario

pytestmark = pytest.mark.use_fake(openrouter=False, DRAIN_SECONDS=0.5, CHAT_STREAM_COALESCE_MS=0)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="Be brief.")


def start(app, owner, project_id, message="Hi") -> start_turn.Turn:
    with app.app_context():
        user = db.session.get(User, owner.id)
        return start_turn.send(user=user, project_id=project_id, message=message)


def reply_row(app, reply_id: int) -> tuple:
    with app.app_context():
        row = db.session.execute(
            select(Message.status, Message.content, Message.error).where(Message.id == reply_id)
        ).one()
        return tuple(row)


@pytest.mark.parametrize(
    ("checkpoint", "published", "kept"),
    [
        ("half a", ["half a", " reply"], "half a reply"),  # the broker has more: its text
        ("half a reply", ["half"], "half a reply"),  # a gapped stream: the checkpoint stays
    ],
)
def test_the_lease_sweep_stores_the_longer_of_the_broker_text_and_the_checkpoint(
    app, owner, project_id, checkpoint, published, kept
):
    turn = start(app, owner, project_id)
    broker = app.extensions["broker"]
    broker.open(turn.reply_id)
    for text in published:
        broker.publish(turn.reply_id, "delta", {"text": text})
    with app.app_context():
        db.session.execute(
            update(Message)
            .where(Message.id == turn.reply_id)
            .values(content=checkpoint, lease_until=utcnow())
        )
        db.session.commit()
    app.extensions["maintenance"].run_now()
    assert reply_row(app, turn.reply_id) == ("interrupted", kept, replies.INTERRUPTED_TEXT)
    # Its readers are told: the terminal event follows what they read.
    last = broker.read(turn.reply_id, None, timeout=0)[-1]
    assert last.event == "error" and last.data["message"]["content"] == kept


def test_interrupting_twice_changes_nothing_the_second_time(app, owner, project_id):
    turn = start(app, owner, project_id)
    with app.app_context():
        assert replies.interrupt(turn.reply_id) is True
        assert replies.interrupt(turn.reply_id) is False
    assert reply_row(app, turn.reply_id)[0] == "interrupted"


def test_the_drain_lets_a_short_turn_finish_and_interrupts_a_long_one_with_its_text(
    app, owner, project_id, fake
):
    """Two detached turns (their clients left): the short one ends within ``DRAIN_SECONDS``
    (0.5 s) and is complete; the long one is cut there, stored as interrupted with every word
    the broker published, and its terminal event is published for its readers."""
    fake.script(
        "responses",
        Scenario(deltas=[f"l{i} " for i in range(400)], token_delay_ms=10),
        Scenario(deltas=[f"s{i} " for i in range(5)], token_delay_ms=20),
    )
    long_turn, short_turn = start(app, owner, project_id), start(app, owner, project_id)
    broker = app.extensions["broker"]
    deadline = time.monotonic() + 10
    with app.test_request_context():
        turns.launch_detached(long_turn)
        # The fake answers calls in the order they come: the long turn must take the long script.
        while not fake.calls("responses"):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        turns.launch_detached(short_turn)
    while "l5" not in (broker.text(long_turn.reply_id) or ""):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    began = time.monotonic()
    drain.begin(app)
    assert drain.draining(app)
    assert drain.finish(app, timeout=10)
    took = time.monotonic() - began

    assert reply_row(app, short_turn.reply_id)[:2] == ("complete", "s0 s1 s2 s3 s4 ")
    status, content, error = reply_row(app, long_turn.reply_id)
    assert (status, error) == ("interrupted", replies.INTERRUPTED_TEXT)
    assert content == broker.text(long_turn.reply_id) and content.startswith("l0 l1 l2 l3 l4 l5")
    last = broker.read(long_turn.reply_id, None, timeout=0)[-1]
    assert last.event == "error" and last.data["error"]["code"] == "interrupted"
    assert last.data["message"]["content"] == content
    assert 0.5 <= took < 5
    assert len(app.extensions["running_turns"]) == 0


def test_a_turn_has_ended_when_its_thread_has_let_go_of_the_database(app, owner, project_id, fake):
    """``stop_all`` (tests, shutdown) and the drain wait for a detached turn's thread to leave
    its app context, where its session gives the connection back to the pool: returned after
    the pool was disposed, the connection is left to the garbage collector (PostgreSQL's driver
    then warns). A slow context teardown, registered as any extension registers one, holds the
    thread there for a while after the reply is stored."""
    fake.script("responses", Scenario(deltas=["short"]))
    left = []

    @app.teardown_appcontext
    def slow_teardown(_exc):
        if threading.current_thread().name.startswith("turn-"):
            time.sleep(0.3)
            left.append(threading.current_thread().name)

    turn = start(app, owner, project_id)
    with app.test_request_context():
        turns.launch_detached(turn)
    deadline = time.monotonic() + 10
    while reply_row(app, turn.reply_id)[0] == "streaming":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert app.extensions["running_turns"].stop_all(timeout=10)
    assert left == [f"turn-{turn.reply_id}"]  # its context was torn down before stop_all returned
