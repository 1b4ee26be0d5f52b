"""The assistant row's life in the app (app/chat/replies.py): written as ``streaming`` with the
user's message, checkpointed while it streams, finished exactly once, ``interrupted`` when its
lease runs out, and written from the spool when the database comes back. The same rules against
real gunicorn, ``kill -9`` and a stopped PostgreSQL are in test_reply_faults.py."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from app.chat import replies
from app.chat import services as chat
from app.chat import start as start_turn
from app.extensions import db
from app.models import Message, MessageStatus, User
from app.models.base import utcnow
from app.providers.events import Done, Text
from tests.factories import make_project
from tests.sse import parse_sse
from tools.fake_provider import Scenario

pytestmark = pytest.mark.use_fake(
    openrouter=False, CHAT_CHECKPOINT_SECONDS=0.05, CHAT_STREAM_COALESCE_MS=0
)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="Be brief.")


def stored(app) -> list[tuple]:
    with app.app_context():
        rows = db.session.execute(
            select(Message.role, Message.status, Message.content, Message.error).order_by(
                Message.id
            )
        ).all()
        return [tuple(r) for r in rows]


def start(app, owner, project_id, message="Hi") -> start_turn.Turn:
    with app.app_context():
        user = db.session.get(User, owner.id)
        return start_turn.send(user=user, project_id=project_id, message=message)


def test_reply_row_is_written_with_the_users_message_and_finished_once(app, owner, project_id):
    turn = start(app, owner, project_id)
    # Before any provider call: the user's message and the reply, streaming under a lease.
    assert stored(app) == [("user", "complete", "Hi", None), ("assistant", "streaming", "", None)]
    with app.app_context():
        lease = db.session.get(Message, turn.reply_id).lease_until
        assert lease > utcnow()
        events = list(chat.run_turn(turn))
    done = events[-1]
    assert isinstance(done, Done) and done.stored is True
    assert done.message.id == turn.reply_id
    text = "Hello from the fake model."
    assert stored(app) == [("user", "complete", "Hi", None), ("assistant", "complete", text, None)]
    with app.app_context():
        assert db.session.get(Message, turn.reply_id).lease_until is None


def test_checkpoints_store_the_text_so_far_while_it_streams(app, owner, project_id, fake):
    fake.script("responses", Scenario(deltas=[f"w{i} " for i in range(30)], token_delay_ms=20))
    turn = start(app, owner, project_id)
    with app.app_context():
        stream = chat.run_turn(turn)
        seen = ""
        for event in stream:
            if isinstance(event, Text):
                seen += event.text
                if seen.count("w") >= 15:
                    break
        role, status, content, _ = stored(app)[1]
        # A checkpoint ran: the row holds a prefix of what was shown, still streaming.
        assert (role, status) == ("assistant", "streaming")
        assert content and seen.startswith(content)
        stream.close()  # the client goes: the reply ends incomplete, with all it showed
    assert stored(app)[1][1:3] == ("incomplete", seen)


def test_a_reply_whose_lease_ran_out_is_interrupted_by_the_sweep(app, owner, project_id):
    turn = start(app, owner, project_id)
    with app.app_context():
        db.session.execute(
            update(Message)
            .where(Message.id == turn.reply_id)
            .values(content="half a", lease_until=utcnow())
        )
        db.session.commit()
    app.extensions["maintenance"].run_now()
    assert stored(app)[1] == ("assistant", "interrupted", "half a", replies.INTERRUPTED_TEXT)


def test_the_chat_page_shows_a_dead_reply_as_interrupted_at_once(app, client, owner, project_id):
    turn = start(app, owner, project_id)
    with app.app_context():
        db.session.execute(
            update(Message).where(Message.id == turn.reply_id).values(lease_until=utcnow())
        )
        db.session.commit()
    resp = client.get(f"/api/conversations/{turn.conversation_id}/messages", headers=owner.headers)
    assert [m["status"] for m in resp.get_json()["data"]] == ["complete", "interrupted"]
    assert stored(app)[1][1] == "interrupted"


def test_a_live_reply_is_left_alone_by_the_sweep(app, owner, project_id):
    start(app, owner, project_id)
    app.extensions["maintenance"].run_now()
    assert stored(app)[1][1] == "streaming"


def test_finishing_twice_keeps_the_first_outcome(app, owner, project_id):
    turn = start(app, owner, project_id)
    with app.app_context():
        first = {"content": "first", "status": MessageStatus.COMPLETE}
        assert replies.finish(turn.reply_id, turn.conversation_id, first) is True
        again = {"content": "second", "status": MessageStatus.INCOMPLETE}
        replies.finish(turn.reply_id, turn.conversation_id, again)
    assert stored(app)[1] == ("assistant", "complete", "first", None)


def test_a_late_final_store_wins_over_interrupted(app, owner, project_id):
    """A process that was only slow (its lease ran out) still writes its whole reply."""
    turn = start(app, owner, project_id)
    with app.app_context():
        db.session.execute(
            update(Message).where(Message.id == turn.reply_id).values(lease_until=utcnow())
        )
        db.session.commit()
        replies.expire_leases()
        replies.finish(
            turn.reply_id,
            turn.conversation_id,
            {"content": "all of it", "status": MessageStatus.COMPLETE, "error": None},
        )
    assert stored(app)[1] == ("assistant", "complete", "all of it", None)


def test_spooled_replies_are_written_by_the_maintenance_run(app, owner, project_id):
    turn = start(app, owner, project_id)
    with app.app_context():
        spool = replies.spool()
        values = {"content": "kept on disk", "status": "complete", "model": "m", "total_ms": 5}
        spool.put(turn.reply_id, turn.conversation_id, values)
        ((path, _),) = spool.entries()
        (path.parent / "junk.json").write_text("{not json")
    app.extensions["maintenance"].run_now()
    assert stored(app)[1] == ("assistant", "complete", "kept on disk", None)
    with app.app_context():
        assert [p.name for p, _ in replies.spool().entries()] == []
        assert (path.parent / "junk.json").exists()  # unreadable entries are left for a person


def test_the_stream_says_the_reply_is_stored(client, owner, project_id):
    resp = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "Hi", "stream": True},
        headers=owner.headers,
    )
    events, _ = parse_sse(resp.get_data(as_text=True))
    name, data = events[-1]
    assert name == "done" and data["stored"] is True


def test_history_leaves_out_a_reply_still_streaming(app, owner, project_id, fake):
    first = start(app, owner, project_id, "one")
    with app.app_context():
        replies.checkpoint(first.reply_id, "partial words")
        user = db.session.get(User, owner.id)
        second = start_turn.send(
            user=user, project_id=project_id, message="two", conversation_id=first.conversation_id
        )
    assert [t.content for t in second.request.history] == ["one"]
