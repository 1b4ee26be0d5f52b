"""Regenerate (``POST /api/conversations/<id>/regenerate``): the last user message is answered
again through the same chat service and SSE events; the earlier reply is kept as history, and
the next turn sends the provider only the newest answer."""

import pytest

from tests.factories import make_project, make_user
from tests.sse import parse_sse
from tools.fake_provider import Scenario

pytestmark = pytest.mark.use_fake(openrouter=False, LLM_TIMEOUT_SECONDS=2)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You are Ada's bot.")


def send(client, owner, project_id, message, **body):
    resp = client.post(
        f"/api/projects/{project_id}/chat", json={"message": message, **body}, headers=owner.headers
    )
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def regenerate(client, owner, cid, headers=None, **kw):
    headers = {**owner.headers, **(headers or {})}
    return client.post(f"/api/conversations/{cid}/regenerate", headers=headers, **kw)


def rows(client, owner, cid):
    resp = client.get(f"/api/conversations/{cid}/messages", headers=owner.headers)
    return [(m["role"], m["status"], m["content"]) for m in resp.get_json()["data"]]


def test_regenerate_streams_a_new_reply_and_keeps_the_earlier_one(client, owner, project_id, fake):
    first = send(client, owner, project_id, "First question")
    cid = first["conversation_id"]
    fake.script("responses", Scenario(deltas=["A better", " answer."]))
    resp = regenerate(client, owner, cid, json={"stream": True})
    assert resp.status_code == 200
    assert resp.mimetype == "text/event-stream"
    events, _ = parse_sse(resp.get_data(as_text=True))
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "done" and "delta" in names
    start = events[0][1]
    assert start["conversation"]["id"] == cid
    assert start["user_message"]["content"] == "First question"  # the same message, not a copy
    assert events[-1][1]["message"]["content"] == "A better answer."
    assert events[-1][1]["message"]["html"] == "<p>A better answer.</p>\n"
    # The branch being viewed ends with the new reply; the earlier one is its sibling.
    assert rows(client, owner, cid) == [
        ("user", "complete", "First question"),
        ("assistant", "complete", "A better answer."),
    ]
    page = client.get(f"/api/conversations/{cid}/messages", headers=owner.headers).get_json()
    earlier_id, new_id = first["message"]["id"], events[-1][1]["message"]["id"]
    assert page["data"][1]["siblings"] == [earlier_id, new_id]
    assert page["data"][1]["parent_id"] == page["data"][0]["id"]
    assert page["data"][0]["siblings"] is None
    first_call, again = fake.calls("responses")
    assert again.json["input"] == first_call.json["input"]  # the earlier answer is not sent


def test_the_next_turn_sends_only_the_newest_answer(client, owner, project_id, fake):
    cid = send(client, owner, project_id, "First question")["conversation_id"]
    fake.script("responses", Scenario(text="A better answer."))
    assert regenerate(client, owner, cid, json={}).status_code == 200
    send(client, owner, project_id, "Second question", conversation_id=cid)
    assert fake.calls("responses")[-1].json["input"] == [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "A better answer."},
        {"role": "user", "content": "Second question"},
    ]


def test_without_a_body_the_answer_is_json(client, owner, project_id):
    cid = send(client, owner, project_id, "Hi")["conversation_id"]
    resp = regenerate(client, owner, cid)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["conversation_id"] == cid
    assert body["reply"] == "Hello from the fake model."
    assert body["message"]["role"] == "assistant"
    sse = regenerate(client, owner, cid, headers={"Accept": "text/event-stream"})
    assert sse.mimetype == "text/event-stream"


def test_regenerate_retries_a_failed_reply(client, owner, project_id, fake):
    down = Scenario(status=503, message="Overloaded.")
    fake.script("responses", down, down)
    resp = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "Hello?", "stream": True},
        headers=owner.headers,
    )
    events, _ = parse_sse(resp.get_data(as_text=True))
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["message"] == "OpenAI: Overloaded."
    cid = events[0][1]["conversation"]["id"]
    assert regenerate(client, owner, cid, json={"stream": False}).status_code == 200
    # The retried reply takes the failed one's place on the branch; the failure is a sibling.
    assert [(role, status) for role, status, _ in rows(client, owner, cid)] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    page = client.get(f"/api/conversations/{cid}/messages", headers=owner.headers).get_json()
    failed_id = events[-1][1]["message"]["id"]
    assert page["data"][1]["siblings"] == [failed_id, page["data"][1]["id"]]


def test_another_users_conversation_is_404_and_nothing_is_sent(
    app, client, owner, project_id, fake
):
    cid = send(client, owner, project_id, "Private")["conversation_id"]
    intruder = make_user(app, email="intruder@example.com")
    calls = len(fake.calls("responses"))
    for kw in ({"json": {"stream": True}}, {"data": "not json"}, {}):
        assert regenerate(client, intruder, cid, **kw).status_code == 404
    assert regenerate(client, intruder, 999_999).status_code == 404
    assert len(fake.calls("responses")) == calls
    assert len(rows(client, owner, cid)) == 2


def test_a_bad_body_is_refused_after_the_ownership_check(client, owner, project_id):
    cid = send(client, owner, project_id, "Hi")["conversation_id"]
    assert regenerate(client, owner, cid, data="not json").status_code == 415
    bad = regenerate(client, owner, cid, json={"stream": "yes"})
    assert bad.status_code == 422
    assert bad.get_json()["error"]["fields"] == {"stream": "Must be true or false."}
