"""Feedback on replies (``PUT``/``DELETE /api/messages/<id>/feedback``): 👍/👎 with an optional
comment on a finished assistant reply, changeable by its owner, shown in the message JSON and in
the reply's footer on the page. Everything else is a clear 4xx."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from app.chat import replies
from app.chat import start as start_turn
from app.extensions import db
from app.models import Message, User
from tests.factories import make_project, make_user
from tests.sse import parse_sse
from tools.fake_provider import closed_port_url


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You are Ada's bot.")


def chat(client, owner, project_id, message="Hello there", **body):
    resp = client.post(
        f"/api/projects/{project_id}/chat", json={"message": message, **body}, headers=owner.headers
    )
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


@pytest.fixture
def exchange(client, owner, project_id):
    """A finished exchange with the offline model: (conversation id, user message, reply)."""
    body = chat(client, owner, project_id)
    listed = client.get(
        f"/api/conversations/{body['conversation_id']}/messages", headers=owner.headers
    ).get_json()["data"]
    user_message, reply = listed
    assert (user_message["role"], reply["role"], reply["status"]) == (
        "user",
        "assistant",
        "complete",
    )
    return body["conversation_id"], user_message, reply


def rate(client, headers, message_id, **body):
    return client.put(f"/api/messages/{message_id}/feedback", json=body, headers=headers)


def unrate(client, headers, message_id):
    return client.delete(f"/api/messages/{message_id}/feedback", headers=headers)


def stored(app, message_id) -> tuple[int | None, str | None, datetime | None]:
    with app.app_context():
        row = db.session.get(Message, message_id)
        return row.rating, row.feedback, row.rated_at


def listed_feedback(client, owner, conversation_id):
    data = client.get(
        f"/api/conversations/{conversation_id}/messages", headers=owner.headers
    ).get_json()["data"]
    return [m["feedback"] for m in data]


# --- setting, changing, removing ---------------------------------------------------------------


def test_a_reply_is_rated_up_and_the_message_json_says_so(app, client, owner, exchange):
    cid, _, reply = exchange
    assert reply["feedback"] is None
    resp = rate(client, owner.headers, reply["id"], rating="up")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["id"] == reply["id"] and body["content"] == reply["content"]
    assert body["feedback"]["rating"] == "up" and body["feedback"]["comment"] is None
    rating, comment, rated_at = stored(app, reply["id"])
    assert (rating, comment) == (1, None)
    assert datetime.fromisoformat(body["feedback"]["rated_at"]) == rated_at
    assert listed_feedback(client, owner, cid) == [None, body["feedback"]]


def test_feedback_can_be_changed_any_number_of_times(app, client, owner, exchange):
    _, _, reply = exchange
    times = []
    for rating, comment in [
        ("up", None),
        ("down", "Too long."),
        ("up", "Better now."),
        ("down", None),
    ]:
        body = {"rating": rating} if comment is None else {"rating": rating, "comment": comment}
        resp = rate(client, owner.headers, reply["id"], **body)
        assert resp.status_code == 200
        assert resp.get_json()["feedback"]["rating"] == rating
        times.append(stored(app, reply["id"])[2])
    # The last vote came without a comment: the stored one is kept.
    assert stored(app, reply["id"])[:2] == (-1, "Better now.")
    assert times == sorted(times) and times[0] < times[-1]


def test_a_comment_is_trimmed_and_a_blank_one_removes_it(app, client, owner, exchange):
    _, _, reply = exchange
    resp = rate(client, owner.headers, reply["id"], rating="down", comment="  Wrong year.\n ")
    assert resp.get_json()["feedback"]["comment"] == "Wrong year."
    assert stored(app, reply["id"])[:2] == (-1, "Wrong year.")
    resp = rate(client, owner.headers, reply["id"], rating="down", comment="   ")
    assert resp.status_code == 200 and resp.get_json()["feedback"]["comment"] is None
    assert stored(app, reply["id"])[:2] == (-1, None)


def test_null_rating_removes_rating_and_comment(app, client, owner, exchange):
    cid, _, reply = exchange
    rate(client, owner.headers, reply["id"], rating="up", comment="Nice.")
    resp = rate(client, owner.headers, reply["id"], rating=None)
    assert resp.status_code == 200 and resp.get_json()["feedback"] is None
    assert stored(app, reply["id"]) == (None, None, None)
    assert listed_feedback(client, owner, cid) == [None, None]


def test_delete_removes_the_feedback_and_is_idempotent(app, client, owner, exchange):
    _, _, reply = exchange
    rate(client, owner.headers, reply["id"], rating="down", comment="Off topic.")
    for _ in range(2):
        resp = unrate(client, owner.headers, reply["id"])
        assert resp.status_code == 204 and resp.get_data() == b""
        assert stored(app, reply["id"]) == (None, None, None)


def test_the_page_rates_through_the_session_with_its_csrf_token(app, client, owner, exchange):
    _, _, reply = exchange
    client.post("/login", data={"email": owner.email, "password": owner.password})
    refused = client.put(f"/api/messages/{reply['id']}/feedback", json={"rating": "up"}, csrf=False)
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "csrf_failed"
    assert stored(app, reply["id"])[0] is None
    resp = client.put(f"/api/messages/{reply['id']}/feedback", json={"rating": "up"})
    assert resp.status_code == 200
    assert stored(app, reply["id"])[0] == 1


# --- what is refused ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "rating"),
        ({"comment": "No rating given."}, "rating"),
        ({"rating": 1}, "rating"),
        ({"rating": True}, "rating"),
        ({"rating": "good"}, "rating"),
        ({"rating": "UP"}, "rating"),
        ({"rating": ""}, "rating"),
        ({"rating": "up", "comment": 5}, "comment"),
        ({"rating": "up", "comment": ["a"]}, "comment"),
        ({"rating": None, "comment": "A comment without a rating."}, "comment"),
    ],
)
def test_bad_input_is_422_and_changes_nothing(app, client, owner, exchange, body, field):
    _, _, reply = exchange
    rate(client, owner.headers, reply["id"], rating="up", comment="Keep me.")
    before = stored(app, reply["id"])
    resp = rate(client, owner.headers, reply["id"], **body)
    assert resp.status_code == 422
    error = resp.get_json()["error"]
    assert error["code"] == "validation_failed" and field in error["fields"]
    assert stored(app, reply["id"]) == before


def test_comments_are_limited_to_2000_characters(app, client, owner, exchange):
    _, _, reply = exchange
    longest = "x" * 2000
    resp = rate(client, owner.headers, reply["id"], rating="down", comment=f"  {longest}\n")
    assert resp.status_code == 200  # counted after trimming
    assert stored(app, reply["id"])[1] == longest
    resp = rate(client, owner.headers, reply["id"], rating="down", comment=longest + "y")
    assert resp.status_code == 422
    assert "2,000" in resp.get_json()["error"]["fields"]["comment"]
    assert stored(app, reply["id"])[1] == longest


def test_a_users_message_cannot_be_rated(app, client, owner, exchange):
    _, user_message, _ = exchange
    for resp in (
        rate(client, owner.headers, user_message["id"], rating="up"),
        unrate(client, owner.headers, user_message["id"]),
    ):
        assert resp.status_code == 422
        assert resp.get_json()["error"]["code"] == "not_a_reply"
    assert stored(app, user_message["id"]) == (None, None, None)


@pytest.mark.parametrize("stop", [False, True], ids=["streaming", "stopping"])
def test_a_reply_still_being_written_cannot_be_rated(app, client, owner, project_id, stop):
    with app.app_context():
        user = db.session.get(User, owner.id)
        turn = start_turn.send(user=user, project_id=project_id, message="Hi")
        if stop:
            replies.request_stop(turn.reply_id)
        status = db.session.scalar(select(Message.status).where(Message.id == turn.reply_id))
    assert status == ("stopping" if stop else "streaming")
    for resp in (
        rate(client, owner.headers, turn.reply_id, rating="up"),
        unrate(client, owner.headers, turn.reply_id),
    ):
        assert resp.status_code == 422
        assert resp.get_json()["error"]["code"] == "reply_not_finished"
    assert stored(app, turn.reply_id) == (None, None, None)


def test_another_users_reply_is_404_and_keeps_its_feedback(app, client, owner, exchange):
    _, _, reply = exchange
    rate(client, owner.headers, reply["id"], rating="up", comment="Mine.")
    before = stored(app, reply["id"])
    intruder = make_user(app, email="intruder@example.com")
    for resp in (
        rate(client, intruder.headers, reply["id"], rating="down", comment="Theirs."),
        rate(client, intruder.headers, reply["id"], rating="nonsense"),  # 404 before 422
        unrate(client, intruder.headers, reply["id"]),
        rate(client, intruder.headers, 2_000_000, rating="up"),  # no such message at all
    ):
        assert resp.status_code == 404
        assert resp.get_json()["error"]["code"] == "not_found"
    assert stored(app, reply["id"]) == before


def test_anonymous_requests_are_401(app, client, exchange):
    _, _, reply = exchange
    for resp in (
        client.put(f"/api/messages/{reply['id']}/feedback", json={"rating": "up"}),
        client.delete(f"/api/messages/{reply['id']}/feedback"),
    ):
        assert resp.status_code == 401
    assert stored(app, reply["id"]) == (None, None, None)


class TestFailedReplies:
    @pytest.fixture
    def config_overrides(self):
        # A provider key pointing at a closed port: every provider call fails fast.
        return {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": closed_port_url() + "/v1"}

    def test_a_failed_reply_has_finished_and_can_be_rated_down(self, app, client, owner):
        project_id = make_project(app, owner)
        resp = client.post(
            f"/api/projects/{project_id}/chat", json={"message": "Hi"}, headers=owner.headers
        )
        assert resp.status_code == 502
        with app.app_context():
            reply_id, status = db.session.execute(
                select(Message.id, Message.status).where(Message.role == "assistant")
            ).one()
        assert status == "error"
        resp = rate(client, owner.headers, reply_id, rating="down", comment="It failed.")
        assert resp.status_code == 200
        assert stored(app, reply_id)[:2] == (-1, "It failed.")


class TestAbandonedReplies:
    @pytest.fixture
    def config_overrides(self):
        return {"CHAT_REPLY_LEASE_SECONDS": 0}  # a reply left streaming is abandoned at once

    def test_a_reply_whose_process_died_is_interrupted_and_can_be_rated(
        self, app, client, owner, project_id
    ):
        with app.app_context():
            user = db.session.get(User, owner.id)
            turn = start_turn.send(user=user, project_id=project_id, message="Hi")
        resp = rate(client, owner.headers, turn.reply_id, rating="down", comment="Cut off.")
        assert resp.status_code == 200
        body = resp.get_json()
        assert body["status"] == "interrupted"
        assert body["feedback"]["comment"] == "Cut off."
        assert stored(app, turn.reply_id)[:2] == (-1, "Cut off.")


# --- the stream and the page ---------------------------------------------------------------------


def test_the_done_event_carries_feedback_null(app, client, owner, project_id):
    resp = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "Stream please", "stream": True},
        headers=owner.headers,
    )
    events, _ = parse_sse(resp.get_data(as_text=True))
    name, data = events[-1]
    assert name == "done" and data["message"]["feedback"] is None
    assert rate(client, owner.headers, data["message"]["id"], rating="up").status_code == 200


def test_the_reply_footer_shows_the_rating_and_comment_after_a_reload(
    app, client, owner, project_id, exchange
):
    cid, user_message, reply = exchange
    client.post("/login", data={"email": owner.email, "password": owner.password})
    url = f"/projects/{project_id}?c={cid}"
    page = client.get(url).get_data(as_text=True)
    assert page.count('class="feedback"') == 1  # the reply has controls, the user's message none
    assert 'aria-label="Good reply" aria-pressed="false"' in page
    assert 'aria-label="Bad reply" aria-pressed="false"' in page
    rate(client, owner.headers, reply["id"], rating="down", comment="Cite <sources>, please.")
    page = client.get(url).get_data(as_text=True)
    assert 'aria-label="Good reply" aria-pressed="false"' in page
    assert 'aria-label="Bad reply" aria-pressed="true"' in page
    assert "Cite &lt;sources&gt;, please." in page  # shown, as text
    assert "<sources>" not in page
