"""Branches (``app/chat/branches.py``): editing a sent message and regenerating any reply keep
every version as a sibling; the conversation shows one branch (``select`` switches), and the
model is sent exactly the branch being answered, checked by what the fake provider received
over HTTP."""

import pytest

from tests.factories import make_project, make_user
from tools.fake_provider import Scenario

pytestmark = pytest.mark.use_fake(openrouter=False, LLM_TIMEOUT_SECONDS=2)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You are Ada's bot.")


def send(client, owner, project_id, message, cid=None):
    body = {"message": message, "conversation_id": cid}
    resp = client.post(f"/api/projects/{project_id}/chat", json=body, headers=owner.headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def edit(client, owner, message_id, message):
    resp = client.post(
        f"/api/messages/{message_id}/edit", json={"message": message}, headers=owner.headers
    )
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def branch(client, owner, cid):
    page = client.get(f"/api/conversations/{cid}/messages", headers=owner.headers).get_json()
    return [(m["role"], m["content"], m["siblings"]) for m in page["data"]], page["data"]


def sent_input(fake):
    return fake.calls("responses")[-1].json["input"]


def three_turns(client, owner, project_id, fake):
    fake.script("responses", *(Scenario(text=t) for t in ("A1", "A2", "A3")))
    first = send(client, owner, project_id, "Q1")
    cid = first["conversation_id"]
    second = send(client, owner, project_id, "Q2", cid)
    send(client, owner, project_id, "Q3", cid)
    return cid, first, second


def test_editing_a_message_starts_a_branch_and_keeps_the_old_one(client, owner, project_id, fake):
    cid, first, second = three_turns(client, owner, project_id, fake)
    _, rows = branch(client, owner, cid)
    q2 = rows[2]
    fake.script("responses", Scenario(text="B2"))
    answer = edit(client, owner, q2["id"], "Q2, edited")
    # The model is sent the branch up to the edited message, then the new text: not Q2/A2/Q3.
    assert sent_input(fake) == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2, edited"},
    ]
    assert answer["reply"] == "B2"
    shown, rows = branch(client, owner, cid)
    assert [(role, content) for role, content, _ in shown] == [
        ("user", "Q1"), ("assistant", "A1"), ("user", "Q2, edited"), ("assistant", "B2"),
    ]  # fmt: skip
    assert rows[2]["siblings"] == [q2["id"], rows[2]["id"]]  # ‹ 2/2 ›
    assert rows[2]["parent_id"] == rows[1]["id"] == q2["parent_id"]
    # The next message continues the new branch.
    fake.script("responses", Scenario(text="B3"))
    send(client, owner, project_id, "Q3b", cid)
    assert sent_input(fake)[-2:] == [
        {"role": "assistant", "content": "B2"},
        {"role": "user", "content": "Q3b"},
    ]
    # Switching back shows the old branch whole, to its newest end, and continues it.
    selected = client.post(f"/api/messages/{q2['id']}/select", headers=owner.headers)
    assert selected.status_code == 200 and selected.get_json()["id"] == cid
    shown, _ = branch(client, owner, cid)
    assert [content for _, content, _ in shown] == ["Q1", "A1", "Q2", "A2", "Q3", "A3"]
    fake.script("responses", Scenario(text="A4"))
    send(client, owner, project_id, "Q4", cid)
    assert [m["content"] for m in sent_input(fake)] == ["Q1", "A1", "Q2", "A2", "Q3", "A3", "Q4"]


def test_any_reply_can_be_regenerated(client, owner, project_id, fake):
    cid, first, second = three_turns(client, owner, project_id, fake)
    a1 = first["message"]["id"]
    fake.script("responses", Scenario(text="A1 again"))
    resp = client.post(
        f"/api/conversations/{cid}/regenerate", json={"message_id": a1}, headers=owner.headers
    )
    assert resp.status_code == 200, resp.get_json()
    assert sent_input(fake) == [{"role": "user", "content": "Q1"}]  # the branch up to Q1
    shown, rows = branch(client, owner, cid)
    assert [content for _, content, _ in shown] == ["Q1", "A1 again"]
    assert rows[1]["siblings"] == [a1, rows[1]["id"]]
    # The earlier reply's branch, with everything after it, is one select away.
    client.post(f"/api/messages/{a1}/select", headers=owner.headers)
    shown, _ = branch(client, owner, cid)
    assert [content for _, content, _ in shown] == ["Q1", "A1", "Q2", "A2", "Q3", "A3"]


def test_bad_edits_and_regenerations_are_422(client, owner, project_id, fake):
    cid, first, _ = three_turns(client, owner, project_id, fake)
    reply = first["message"]["id"]
    q1 = first["message"]["parent_id"]
    calls = len(fake.calls("responses"))
    a_reply = client.post(
        f"/api/messages/{reply}/edit", json={"message": "x"}, headers=owner.headers
    )
    assert a_reply.status_code == 422
    assert a_reply.get_json()["error"]["fields"] == {
        "message_id": "Only your own messages can be edited."
    }
    empty = client.post(f"/api/messages/{q1}/edit", json={"message": " "}, headers=owner.headers)
    assert empty.status_code == 422 and "message" in empty.get_json()["error"]["fields"]
    unknown = client.post(
        f"/api/messages/{q1}/edit", json={"message": "x", "x": 1}, headers=owner.headers
    )
    assert unknown.status_code == 422
    other_cid = send(client, owner, project_id, "Elsewhere")["conversation_id"]
    calls = len(fake.calls("responses"))
    foreign = client.post(
        f"/api/conversations/{other_cid}/regenerate",
        json={"message_id": reply},
        headers=owner.headers,
    )
    assert foreign.status_code == 422
    assert foreign.get_json()["error"]["fields"] == {
        "message_id": "Not a message of this conversation."
    }
    assert len(fake.calls("responses")) == calls  # nothing was sent


def test_another_users_message_is_404(app, client, owner, project_id, fake):
    _, first, _ = three_turns(client, owner, project_id, fake)
    eve = make_user(app, email="eve@example.com")
    q1 = first["message"]["parent_id"]
    calls = len(fake.calls("responses"))
    for path, body in (
        (f"/api/messages/{q1}/edit", {"message": "mine"}),
        (f"/api/messages/{q1}/select", None),
    ):
        assert client.post(path, json=body, headers=eve.headers).status_code == 404
    assert len(fake.calls("responses")) == calls
