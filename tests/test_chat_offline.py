"""Chat with no provider key: the offline demo model, end to end through the app."""

import pytest

from app.extensions import db
from app.models import Message
from tests.factories import make_conversation, make_project, make_user
from tests.sse import parse_sse


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You are Ada's bot.")


def chat(client, owner, project_id, **body):
    return client.post(f"/api/projects/{project_id}/chat", json=body, headers=owner.headers)


def test_non_streaming_reply_is_stored_with_metadata(app, client, owner, project_id):
    resp = chat(client, owner, project_id, message="Hello there")
    assert resp.status_code == 200
    body = resp.get_json()
    assert "Offline demo model" in body["reply"]
    assert "Hello there" in body["reply"]
    msg = body["message"]
    assert (msg["role"], msg["status"], msg["provider"], msg["model"]) == (
        "assistant",
        "complete",
        "offline",
        "offline-demo",
    )
    assert msg["prompt_version"] == 1
    assert msg["fallback"] is False
    listed = client.get(
        f"/api/conversations/{body['conversation_id']}/messages", headers=owner.headers
    ).get_json()
    assert [m["role"] for m in listed["data"]] == ["user", "assistant"]
    assert listed["data"][0]["content"] == "Hello there"
    assert listed["has_more"] is False


def test_streaming_sends_start_deltas_and_one_done(app, client, owner, project_id):
    resp = chat(client, owner, project_id, message="Stream please", stream=True)
    assert resp.status_code == 200
    assert resp.mimetype == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-cache, no-store"
    assert resp.headers["X-Accel-Buffering"] == "no"
    events, _ = parse_sse(resp.get_data(as_text=True))
    names = [name for name, _ in events]
    assert names[0] == "start"
    assert names[-1] == "done"
    assert names.count("done") == 1 and "error" not in names
    deltas = "".join(data["text"] for name, data in events if name == "delta")
    done = events[-1][1]["message"]
    assert deltas == done["content"]
    assert "<strong>Offline demo model.</strong>" in done["html"]
    with app.app_context():
        stored = db.session.get(Message, done["id"])
        assert stored.status == "complete" and stored.content == deltas


def test_accept_header_selects_streaming(client, owner, project_id):
    resp = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "hi"},
        headers={**owner.headers, "Accept": "text/event-stream"},
    )
    assert resp.mimetype == "text/event-stream"


def test_seed_shape_endpoint(client, owner, project_id):
    resp = client.post(
        "/api/chat", json={"projectId": project_id, "message": "hi"}, headers=owner.headers
    )
    assert resp.status_code == 200
    second = client.post(
        "/api/chat",
        json={
            "projectId": project_id,
            "message": "again",
            "conversationId": resp.get_json()["conversation_id"],
        },
        headers=owner.headers,
    )
    assert second.get_json()["conversation_id"] == resp.get_json()["conversation_id"]


def test_another_users_project_via_seed_shape_is_404(app, client, project_id):
    intruder = make_user(app)
    resp = client.post(
        "/api/chat", json={"projectId": project_id, "message": "hi"}, headers=intruder.headers
    )
    assert resp.status_code == 404


def test_another_users_conversation_cannot_be_continued(app, client, owner, project_id):
    conversation_id = make_conversation(app, owner, project_id)
    intruder = make_user(app)
    own_project = make_project(app, intruder)
    resp = client.post(
        f"/api/projects/{own_project}/chat",
        json={"message": "hi", "conversation_id": conversation_id},
        headers=intruder.headers,
    )
    assert resp.status_code == 404


def test_conversation_of_another_project_is_404(app, client, owner, project_id):
    conversation_id = make_conversation(app, owner, project_id)
    other_project = make_project(app, owner, name="Other")
    resp = chat(client, owner, other_project, message="hi", conversation_id=conversation_id)
    assert resp.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "message"), ({"message": "   "}, "message"), ({"message": 5}, "message")],
)
def test_bad_messages_are_422_and_store_nothing(app, client, owner, project_id, body, field):
    resp = chat(client, owner, project_id, **body)
    assert resp.status_code == 422
    assert field in resp.get_json()["error"]["fields"]
    with app.app_context():
        assert db.session.query(Message).count() == 0


def test_message_length_limit(app, client, owner, project_id):
    app.config["CHAT_MESSAGE_MAX_CHARS"] = 10
    resp = chat(client, owner, project_id, message="x" * 11)
    assert resp.status_code == 422
    assert "10" in resp.get_json()["error"]["message"]


def test_first_message_titles_the_conversation_and_it_can_be_renamed(client, owner, project_id):
    body = chat(
        client, owner, project_id, message="  How do I   reset my password? " * 5
    ).get_json()
    cid = body["conversation_id"]
    listed = client.get(f"/api/projects/{project_id}/conversations", headers=owner.headers)
    title = listed.get_json()["data"][0]["title"]
    assert title.startswith("How do I reset my password?") and len(title) <= 60
    renamed = client.patch(
        f"/api/conversations/{cid}", json={"title": "Passwords"}, headers=owner.headers
    )
    assert renamed.get_json()["title"] == "Passwords"
    assert (
        client.patch(
            f"/api/conversations/{cid}", json={"title": " "}, headers=owner.headers
        ).status_code
        == 422
    )
    assert client.delete(f"/api/conversations/{cid}", headers=owner.headers).status_code == 204
    assert (
        client.get(f"/api/conversations/{cid}/messages", headers=owner.headers).status_code == 404
    )


def test_messages_are_paged_oldest_first(client, owner, project_id):
    cid = chat(client, owner, project_id, message="m0").get_json()["conversation_id"]
    for i in range(1, 5):
        chat(client, owner, project_id, message=f"m{i}", conversation_id=cid)
    url = f"/api/conversations/{cid}/messages"
    newest = client.get(f"{url}?limit=4", headers=owner.headers).get_json()
    assert newest["has_more"] is True
    assert [m["content"] for m in newest["data"] if m["role"] == "user"] == ["m3", "m4"]
    older = client.get(
        f"{url}?limit=4&before={newest['data'][0]['id']}", headers=owner.headers
    ).get_json()
    assert [m["content"] for m in older["data"] if m["role"] == "user"] == ["m1", "m2"]
    assert client.get(f"{url}?limit=x", headers=owner.headers).status_code == 422


def test_regenerate_answers_the_last_user_message_again(app, client, owner, project_id):
    cid = chat(client, owner, project_id, message="only once").get_json()["conversation_id"]
    resp = chat(client, owner, project_id, regenerate=True, conversation_id=cid)
    assert resp.status_code == 200
    rows = client.get(f"/api/conversations/{cid}/messages", headers=owner.headers).get_json()[
        "data"
    ]
    # The branch shows the new reply; the first one is its sibling.
    assert [m["role"] for m in rows] == ["user", "assistant"]
    assert len(rows[1]["siblings"]) == 2
    assert chat(client, owner, project_id, regenerate=True).status_code == 422


def test_reply_counts_per_prompt_version(app, client, owner, project_id):
    chat(client, owner, project_id, message="one")
    chat(client, owner, project_id, message="two")
    client.post("/login", data={"email": owner.email, "password": owner.password})
    page = client.get(f"/projects/{project_id}/prompts").get_data(as_text=True)
    assert "2 replies" in page


def test_chat_page_shows_offline_banner_and_history(app, client, owner, project_id):
    cid = make_conversation(app, owner, project_id, message="<script>alert(1)</script>")
    client.post("/login", data={"email": owner.email, "password": owner.password})
    page = client.get(f"/projects/{project_id}?c={cid}").get_data(as_text=True)
    assert "Offline demo model." in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page
    assert 'src="/static/js/chat.js"' in page


def test_chat_page_for_another_users_conversation_is_404(app, client, owner, project_id):
    cid = make_conversation(app, owner, project_id)
    intruder = make_user(app)
    own_project = make_project(app, intruder)
    client.post("/login", data={"email": intruder.email, "password": intruder.password})
    assert client.get(f"/projects/{own_project}?c={cid}").status_code == 404
