"""Turns as jobs, through the API, on both brokers (in-process, and Redis Streams on the real
Redis): attach and resume with ``Last-Event-ID``, replay a finished turn, read a turn the
broker cannot show from the database, Stop from anywhere (twice, after the end, through the
database), and ownership. Against the fake provider over real HTTP."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from sqlalchemy import select

from app.chat import replies
from app.chat import services as chat
from app.chat import start as start_turn
from app.extensions import db
from app.models import Message, User
from app.providers.events import Done, Text
from tests.factories import make_project, make_user
from tests.sse import read_stream
from tools.fake_provider import Scenario

REDIS = os.environ.get("TEST_BROKER_REDIS_URL", "redis://127.0.0.1:6379/11")
WORDS = [f"w{i} " for i in range(30)]


@pytest.fixture(autouse=True)
def _reset(fake):
    fake.reset()


@pytest.fixture(params=["memory", "redis"])
def config_overrides(request, fake):
    settings = fake.app_config(
        openrouter=False,
        CHAT_HEARTBEAT_SECONDS=0.2,
        CHAT_RESUME_POLL_SECONDS=0.05,
        CHAT_CHECKPOINT_SECONDS=0.1,
    )
    if request.param == "redis":
        settings |= {"REDIS_URL": REDIS, "REDIS_KEY_PREFIX": f"test-{uuid.uuid4().hex[:10]}:"}
    return settings


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="Be brief.")


def open_stream(client, owner, project_id, message="Hi"):
    return client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": message, "stream": True},
        headers=owner.headers,
        buffered=False,
    )


def ids_and_events(raw: str) -> list[tuple[str | None, str, dict]]:
    """(id, event, data) of each complete frame."""
    out = []
    for block in raw.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "event" in fields and "data" in fields:
            out.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return out


def attach(client, owner, turn_id, after=None, **kw):
    headers = {**owner.headers, **({"Last-Event-ID": after} if after else {})}
    return client.get(f"/api/turns/{turn_id}/events", headers=headers, **kw)


def reply_row(app, turn_id) -> Message:
    with app.app_context():
        row = db.session.get(Message, turn_id)
        db.session.expunge(row)
        return row


def wait_final(app, turn_id, timeout=10.0) -> Message:
    deadline = time.monotonic() + timeout
    while (row := reply_row(app, turn_id)).status in replies.LIVE:
        assert time.monotonic() < deadline, row.status
        time.sleep(0.02)
    return row


def test_a_reader_resumes_from_its_last_event_id(app, client, owner, project_id, fake):
    fake.script("responses", Scenario(deltas=WORDS, token_delay_ms=15))
    first = ids_and_events(
        read_stream(open_stream(client, owner, project_id), lambda r: r.count("event: delta") >= 3)
    )
    start_id, start, data = first[0]
    assert (start_id, start) == ("0-1", "start")
    turn_id = data["turn_id"]
    last_id = first[-1][0]

    rest = ids_and_events(attach(client, owner, turn_id, after=last_id).get_data(as_text=True))
    # Nothing twice, nothing missed: the two readers' texts make the whole reply.
    ids = [i for i, _, _ in first + rest]
    assert len(ids) == len(set(ids))
    text = "".join(d["text"] for _, e, d in first + rest if e == "delta")
    assert text == "".join(WORDS)
    assert rest[-1][1] == "done" and rest[-1][2]["message"]["status"] == "complete"
    assert fake.disconnects == 0 and len(fake.calls("responses")) == 1


def test_two_readers_of_one_turn_both_get_all_of_it(app, client, owner, project_id, fake):
    fake.script("responses", Scenario(deltas=WORDS, token_delay_ms=10))
    resp = open_stream(client, owner, project_id)
    first = read_stream(resp, lambda r: "event: start" in r)
    turn_id = ids_and_events(first)[0][2]["turn_id"]
    second = ids_and_events(attach(client, owner, turn_id).get_data(as_text=True))
    assert [e for _, e, _ in second][0] == "start"  # from the beginning, without an id
    assert "".join(d["text"] for _, e, d in second if e == "delta") == "".join(WORDS)
    assert wait_final(app, turn_id).content == "".join(WORDS)


def test_the_provider_is_called_before_the_response_is_read(app, client, owner, project_id, fake):
    """Issue 34: ``launch`` makes the provider call as the view returns, so it is under way
    while the response's head and ``start`` are written: the provider hears of the turn before
    a byte of the response has been read (it used to, only once the body was)."""
    fake.script("responses", Scenario(deltas=WORDS))
    resp = open_stream(client, owner, project_id)  # the view has returned; nothing is read
    deadline = time.monotonic() + 5.0
    while not fake.calls("responses") and time.monotonic() < deadline:
        time.sleep(0.01)
    called_before_reading = len(fake.calls("responses"))
    events = ids_and_events(resp.get_data(as_text=True))  # now read it all
    assert called_before_reading == 1
    assert [e for _, e, _ in events][0] == "start" and events[-1][1] == "done"
    assert "".join(d["text"] for _, e, d in events if e == "delta") == "".join(WORDS)
    assert len(fake.calls("responses")) == 1


def test_a_finished_turn_replays_its_outcome(app, client, owner, project_id):
    raw = open_stream(client, owner, project_id).get_data(as_text=True)
    events = ids_and_events(raw)
    turn_id, last_id = events[0][2]["turn_id"], events[-1][0]
    # After the last id: the broker has nothing more, the database gives the outcome again.
    again = ids_and_events(attach(client, owner, turn_id, after=last_id).get_data(as_text=True))
    assert [(i, e) for i, e, _ in again] == [(None, "done")]
    assert again[0][2]["message"]["content"] == events[-1][2]["message"]["content"]


def test_a_turn_the_broker_does_not_know_is_read_from_the_database(app, client, owner, project_id):
    """As another process without a shared broker sees it: a snapshot of the checkpointed text,
    then what later checkpoints add, then the stored outcome."""
    with app.app_context():
        user = db.session.get(User, owner.id)
        turn = start_turn.send(user=user, project_id=project_id, message="Hi")
        replies.checkpoint(turn.reply_id, "Hello")
    resp = attach(client, owner, turn.reply_id, buffered=False)
    chunks = iter(resp.response)
    received = ""
    while "event: snapshot" not in received:
        received += next(chunks).decode()
    with app.app_context():
        replies.checkpoint(turn.reply_id, "Hello wor")
    while "event: delta" not in received:
        received += next(chunks).decode()
    with app.app_context():
        replies.finish(
            turn.reply_id, turn.conversation_id, {"content": "Hello world", "status": "complete"}
        )
    for chunk in chunks:
        received += chunk.decode()
    events = [(e, d) for _, e, d in ids_and_events(received)]
    assert events[0] == ("snapshot", {"text": "Hello"})
    assert events[1] == ("delta", {"text": " wor"})
    assert events[-1][0] == "done" and events[-1][1]["message"]["content"] == "Hello world"


def test_stop_ends_the_turn_once_and_again_changes_nothing(app, client, owner, project_id, fake):
    fake.script("responses", Scenario(deltas=WORDS * 10, token_delay_ms=20))
    raw = read_stream(open_stream(client, owner, project_id), lambda r: "event: delta" in r)
    turn_id = ids_and_events(raw)[0][2]["turn_id"]
    stop = client.post(f"/api/turns/{turn_id}/stop", headers=owner.headers)
    assert stop.status_code == 200 and stop.get_json()["status"] in ("stopping", "incomplete")
    row = wait_final(app, turn_id)
    assert (row.status, row.error) == ("incomplete", replies.STOPPED_TEXT)
    assert fake.wait_for_disconnects(1)
    again = client.post(f"/api/turns/{turn_id}/stop", headers=owner.headers).get_json()
    assert again == {"id": turn_id, "conversation_id": row.conversation_id, "status": "incomplete"}
    assert reply_row(app, turn_id).content == row.content  # one stored outcome
    ended = ids_and_events(attach(client, owner, turn_id).get_data(as_text=True))
    assert ended[-1][1] == "done" and ended[-1][2]["message"]["status"] == "incomplete"


def test_stop_after_the_end_changes_nothing(app, client, owner, project_id):
    raw = open_stream(client, owner, project_id).get_data(as_text=True)
    turn_id = ids_and_events(raw)[0][2]["turn_id"]
    before = reply_row(app, turn_id)
    resp = client.post(f"/api/turns/{turn_id}/stop", headers=owner.headers)
    assert resp.get_json()["status"] == "complete"
    after = reply_row(app, turn_id)
    assert (after.status, after.content) == (before.status, before.content)


def test_stop_through_the_database_reaches_a_turn_no_broker_can(app, owner, project_id, fake):
    """The generating process learns of a Stop at its next checkpoint when the broker cannot
    carry it (another process without Redis)."""
    fake.script("responses", Scenario(deltas=WORDS * 10, token_delay_ms=20))
    with app.app_context():
        user = db.session.get(User, owner.id)
        turn = start_turn.send(user=user, project_id=project_id, message="Hi")
        events = chat.run_turn(turn)  # a Cancel of its own, unknown to the broker
        for event in events:
            if isinstance(event, Text):
                replies.request_stop(turn.reply_id)
                break
        outcome = [e for e in events if isinstance(e, Done)]
    assert outcome and outcome[0].message.status == "incomplete"
    row = reply_row(app, turn.reply_id)
    assert (row.status, row.error) == ("incomplete", replies.STOPPED_TEXT)
    assert len(row.content.split()) < 300
    assert fake.wait_for_disconnects(1)


@pytest.mark.parametrize("who", ["another user", "no such turn", "a user message"])
def test_attaching_or_stopping_what_is_not_your_turn_is_404(app, client, owner, project_id, who):
    raw = open_stream(client, owner, project_id).get_data(as_text=True)
    start = ids_and_events(raw)[0][2]
    turn_id, headers = start["turn_id"], owner.headers
    if who == "another user":
        headers = make_user(app, email="eve@example.com").headers
    elif who == "no such turn":
        turn_id = 99_999
    else:
        turn_id = start["user_message"]["id"]
    assert client.get(f"/api/turns/{turn_id}/events", headers=headers).status_code == 404
    assert client.post(f"/api/turns/{turn_id}/stop", headers=headers).status_code == 404
    with app.app_context():
        statuses = db.session.scalars(select(Message.status).where(Message.role == "assistant"))
        assert list(statuses) == ["complete"]


def test_a_bad_event_id_is_422(client, owner, project_id):
    raw = open_stream(client, owner, project_id).get_data(as_text=True)
    turn_id = ids_and_events(raw)[0][2]["turn_id"]
    resp = client.get(f"/api/turns/{turn_id}/events?after=%2e%2e", headers=owner.headers)
    assert resp.status_code == 422
    assert "after" in resp.get_json()["error"]["fields"]
