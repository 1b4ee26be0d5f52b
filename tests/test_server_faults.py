"""Provider faults end to end through the production server.

The app runs as ``make serve`` runs it: gunicorn with ``gunicorn.conf.py`` (gevent worker) in its
own process, on a database migrated by ``flask db upgrade`` (SQLite, or PostgreSQL when
``TEST_DATABASE_URL`` is set), calling the fake provider server over real HTTP. Each test is one
fault: what the client is shown over SSE or JSON, what the database holds afterwards, and that
no message was lost or stored twice.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.sse import parse_sse
from tools.fake_provider import Scenario
from tools.servers import free_port, gunicorn, migrate, server_env

pytestmark = pytest.mark.server  # gunicorn or a private server per test or module

TIMEOUT_S = 0.5  # the server's LLM_TIMEOUT_SECONDS: a hang longer than this is a timeout
HEARTBEAT_S = 0.2  # keep-alive comments while the model is silent; a gone client shows there


@pytest.fixture(scope="module")
def server(fake, tmp_path_factory, module_server_database):
    """gunicorn + a migrated database, pointed at the session's fake provider server."""
    database_url = module_server_database
    env = server_env(
        database_url,
        free_port(),
        UPLOAD_DIR=str(tmp_path_factory.mktemp("uploads")),
        OPENAI_API_KEY="test-openai-key",
        OPENROUTER_API_KEY="test-openrouter-key",
        OPENAI_BASE_URL=fake.openai_base_url,
        OPENROUTER_BASE_URL=fake.openrouter_base_url,
        LLM_TIMEOUT_SECONDS=str(TIMEOUT_S),
        LLM_RETRY_MAX_WAIT_SECONDS="0.3",
        CHAT_HEARTBEAT_SECONDS=str(HEARTBEAT_S),
    )
    migrate(env)
    engine = create_engine(database_url)
    with gunicorn(env, tmp_path_factory.mktemp("gunicorn"), ready="/readyz") as running:
        yield running.base, engine
    engine.dispose()


@pytest.fixture(scope="module")
def token(server):
    base, _ = server
    r = httpx.post(
        f"{base}/api/auth/register",
        json={"email": "faults@example.com", "password": "correct horse battery"},
        trust_env=False,
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


@pytest.fixture
def project(server, token, fake):
    """A new project per test, so its rows are this test's alone."""
    fake.reset()
    base, _ = server
    r = httpx.post(
        f"{base}/api/projects",
        json={"name": "Faults", "system_prompt": "You answer briefly."},
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def chat(server, token, project_id, message, *, stream=True, conversation_id=None):
    """One chat request; streamed ones return the parsed SSE events."""
    base, _ = server
    body = {"message": message, "stream": stream}
    if conversation_id:
        body["conversation_id"] = conversation_id
    r = httpx.post(
        f"{base}/api/projects/{project_id}/chat",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        trust_env=False,
    )
    if not stream:
        return r
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events, _ = parse_sse(r.text)
    return events


def leave_when(server, token, project_id, message, seen, *, then=None) -> None:
    """Stream a chat and drop the connection (a closed tab, a lost network) as soon as
    ``seen(received_so_far)`` is true; ``then(turn_id)`` runs first, if given."""
    base, _ = server
    received = ""
    with (
        httpx.Client(trust_env=False, timeout=30) as client,
        client.stream(
            "POST",
            f"{base}/api/projects/{project_id}/chat",
            json={"message": message, "stream": True},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        for chunk in r.iter_text():
            received += chunk
            if seen(received):
                if then is not None:
                    start = received.split("event: start\ndata: ")[1].split("\n")[0]
                    then(json.loads(start)["turn_id"])
                return  # leaving the blocks closes the connection mid-stream


def stored_reply(server, project_id) -> list[tuple]:
    """The project's rows once the reply row is final (it is finished when the server notices)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stored = rows(server, project_id)
        if len(stored) >= 2 and all(r[2] != "streaming" for r in stored):
            break
        time.sleep(0.05)
    return stored


def rows(server, project_id) -> list[tuple]:
    """(conversation, role, status, content, provider, fallback) of every message stored."""
    _, engine = server
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT m.conversation_id, m.role, m.status, m.content, m.provider, m.fallback"
                    " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                    " WHERE c.project_id = :p ORDER BY m.id"
                ),
                {"p": project_id},
            )
        ]


def terminal(events):
    """The stream's one terminal event (``done`` or ``error``); exactly one is allowed."""
    ends = [(name, data) for name, data in events if name in ("done", "error")]
    assert len(ends) == 1, events
    assert events[-1] == ends[0], "nothing may follow the terminal event"
    return ends[0]


@pytest.mark.parametrize(
    "scripts",
    [
        pytest.param(
            [Scenario(status=503), Scenario(status=503)], id="primary-down"
        ),  # 5xx: one short retry, then the fallback
        pytest.param([Scenario(hang_s=TIMEOUT_S * 4)], id="primary-slow-past-the-timeout"),
        pytest.param([Scenario(malformed=True)], id="primary-malformed-stream"),
        pytest.param(
            [Scenario(cut_after=0), Scenario(cut_after=0)], id="primary-drops-before-text"
        ),  # a connection error gets one short retry on the primary first
    ],
)
def test_primary_faults_before_text_are_answered_by_the_fallback(
    server, token, project, fake, scripts
):
    fake.script("responses", *scripts)
    events = chat(server, token, project, "Are you there?")

    name, data = terminal(events)
    assert name == "done", data
    shown = "".join(d["text"] for n, d in events if n == "delta")
    assert shown == "Hello from the fake model."  # one reply, nothing from the failed attempt
    assert (data["message"]["provider"], data["message"]["fallback"]) == ("openrouter", True)
    assert len(fake.calls("responses")) == len(scripts)
    assert len(fake.calls("chat")) == 1
    stored = rows(server, project)
    assert [r[1:] for r in stored] == [
        ("user", "complete", "Are you there?", None, False),
        ("assistant", "complete", shown, "openrouter", True),
    ]


def test_mid_stream_drop_keeps_the_partial_reply_and_does_not_fall_back(
    server, token, project, fake
):
    fake.script("responses", Scenario(cut_after=2))
    events = chat(server, token, project, "Tell me more")

    name, data = terminal(events)
    assert name == "error" and data["partial"] is True
    assert "".join(d["text"] for n, d in events if n == "delta") == "Hello from"
    assert fake.calls("chat") == []  # no replay after the first token
    stored = rows(server, project)
    assert [r[1:] for r in stored] == [
        ("user", "complete", "Tell me more", None, False),
        ("assistant", "incomplete", "Hello from", "openai", False),
    ]


def test_both_providers_down_answers_502_and_keeps_the_message(server, token, project, fake):
    fake.script("responses", Scenario(status=500), Scenario(status=500))
    fake.script("chat", Scenario(status=503), Scenario(status=503))
    r = chat(server, token, project, "Anyone?", stream=False)

    assert r.status_code == 502
    assert r.json()["error"]["code"] == "provider_unavailable"
    stored = rows(server, project)
    assert [r[1:4] for r in stored] == [
        ("user", "complete", "Anyone?"),
        ("assistant", "error", ""),
    ]


def test_a_429_storm_on_both_providers(server, token, project, fake):
    """Every provider call is refused with 429 while several users chat at once: each stream
    ends with one error, each message is stored once, and no request is retried twice."""
    users = 6
    storm = Scenario(status=429, retry_after="30")  # too long to wait for: no retry
    fake.script("responses", *[storm] * (users * 2))
    fake.script("chat", *[storm] * (users * 2))
    results: list = [None] * users

    def one(i: int) -> None:
        results[i] = chat(server, token, project, f"storm {i}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    for events in results:
        name, data = terminal(events)
        assert name == "error" and data["partial"] is False
        assert data["error"]["code"] == "provider_unavailable"
    assert len(fake.calls("responses")) == users
    assert len(fake.calls("chat")) == users
    stored = rows(server, project)
    assert sorted(r[3] for r in stored if r[1] == "user") == [f"storm {i}" for i in range(users)]
    assert [r[2] for r in stored if r[1] == "assistant"] == ["error"] * users
    conversations = {r[0] for r in stored}
    assert len(conversations) == users  # one turn each: user + one error reply


def test_a_client_that_leaves_does_not_stop_the_reply(server, token, project, fake):
    """A closed tab is not Stop: the reply goes on to its end and is stored whole, and the
    upstream request is not closed."""
    words = [f"w{i} " for i in range(60)]
    fake.script("responses", Scenario(deltas=words, token_delay_ms=20))  # 1.2 s
    leave_when(server, token, project, "long one", lambda got: got.count("event: delta") >= 3)

    deadline = time.monotonic() + 10
    while (stored := rows(server, project))[-1][2] == "streaming":
        assert time.monotonic() < deadline, stored
        time.sleep(0.05)
    (cid, *user), (_, role, status, content, provider, _) = stored
    assert user == ["user", "complete", "long one", None, False]
    assert (role, status, content, provider) == ("assistant", "complete", "".join(words), "openai")
    assert fake.disconnects == 0

    # The conversation carries on: the next turn sends the whole reply as history, once.
    fake.reset()
    events = chat(server, token, project, "go on", conversation_id=cid)
    assert terminal(events)[0] == "done"
    sent = fake.calls("responses")[0].json["input"]
    assert [item["role"] for item in sent] == ["user", "assistant", "user"]
    assert len(rows(server, project)) == 4


def test_stop_while_the_model_is_silent_closes_the_upstream(server, token, project, fake):
    """The model thinks for 10 s (OpenRouter's processing comments, no event). Stop closes the
    provider request at once under gevent, instead of when the first token comes."""
    base, _ = server
    fake.script("responses", Scenario(status=401))  # the primary is misconfigured: fallback
    fake.script("chat", Scenario(ttft_ms=10_000))

    def stop(turn_id: int) -> None:
        r = httpx.post(
            f"{base}/api/turns/{turn_id}/stop",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        )
        assert r.status_code == 200, r.text

    leave_when(server, token, project, "think hard", lambda got: "event: start" in got, then=stop)

    assert fake.wait_for_disconnects(1, timeout=4)
    stored = stored_reply(server, project)
    assert [r[1:4] for r in stored] == [
        ("user", "complete", "think hard"),
        ("assistant", "incomplete", ""),
    ]
