"""Replies survive what kills requests, against the production server (issue 12, findings 4, 9):

- ``kill -9`` of the gunicorn worker in the middle of a reply: the reply's last checkpoint stays,
  and once its lease is over it reads ``interrupted`` (before: only the user's message was left);
- the database goes down while a reply streams: the client still gets its terminal event, which
  says the reply is not stored yet (``stored: false``), the reply waits in the spool, and is
  written once the database is back (before: the stream was cut with no terminal event and the
  reply was lost). The database is a private PostgreSQL started and stopped here.
"""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import create_engine

from app.chat.replies import INTERRUPTED_TEXT
from tests.sse import parse_sse
from tools.fake_provider import Scenario
from tools.servers import (
    PrivatePostgres,
    Server,
    gunicorn,
    migrate,
    new_project,
    provider_env,
    register,
)
from tools.servers import message_rows as rows

pytestmark = pytest.mark.server  # gunicorn or a private server per test or module

FAST_LEASES = {
    "CHAT_CHECKPOINT_SECONDS": "0.2",
    "CHAT_REPLY_LEASE_SECONDS": "1",
    "CHAT_HEARTBEAT_SECONDS": "0.2",
    "MAINTENANCE_SECONDS": "0.2",
}


def poke_until(server: Server, engine, project_id, done, timeout=20.0) -> list[tuple]:
    """Send requests (each may start the maintenance chores) until ``done(rows)``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{server.base}/healthz", timeout=2, trust_env=False)
            found = rows(engine, project_id)
            if done(found):
                return found
        except (httpx.HTTPError, Exception) as exc:  # the database may still be coming back
            found = [repr(exc)]
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def stream_chat(server, token, project_id, message, *, on_event=None) -> str:
    """Stream a chat to its end (or until the server goes); ``on_event(name, count)`` is called
    at each event line. Returns the raw text received."""
    received = ""
    count = 0
    with (
        httpx.Client(trust_env=False, timeout=60) as client,
        client.stream(
            "POST",
            f"{server.base}/api/projects/{project_id}/chat",
            json={"message": message, "stream": True},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        assert r.status_code == 200
        try:
            for chunk in r.iter_text():
                received += chunk
                new = received.count("event: ") - count
                for _ in range(new):
                    count += 1
                    if on_event:
                        on_event(count)
        except httpx.HTTPError:
            pass  # the worker died mid-stream
    return received


def test_kill_9_of_the_worker_leaves_the_partial_reply_interrupted(fake, tmp_path, server_database):
    fake.reset()
    env = provider_env(fake, tmp_path, server_database, **FAST_LEASES)
    migrate(env)
    engine = create_engine(server_database)
    with gunicorn(env, tmp_path) as server:
        token = register(server.base, "kill9@example.com")
        project = new_project(server.base, token)
        words = [f"w{i} " for i in range(400)]  # 8 s if left running
        fake.script("responses", Scenario(deltas=words, token_delay_ms=20))
        killed: list[int] = []

        def kill_after_checkpoints(count: int) -> None:
            if count == 40 and not killed:  # ~0.8 s in: checkpoints have run
                killed.extend(server.kill_workers())

        stream_chat(server, token, project, "a long one", on_event=kill_after_checkpoints)
        assert killed
        server.wait_ready()  # the master has started a new worker

        found = poke_until(server, engine, project, lambda r: r[-1][1] == "interrupted")
        (user, reply) = found
        assert user == ("user", "complete", "a long one", None)
        role, status, content, error = reply
        assert (role, status, error) == ("assistant", "interrupted", INTERRUPTED_TEXT)
        assert content.startswith("w0 w1 w2") and len(content.split()) < len(words)
    engine.dispose()


@pytest.fixture
def private_pg():
    pg = PrivatePostgres().init().start()
    yield pg
    pg.remove()


def test_database_down_as_the_reply_ends_is_told_spooled_and_written_later(
    fake, tmp_path, private_pg
):
    fake.reset()
    env = provider_env(fake, tmp_path, private_pg.url, CHAT_STORE_RETRY_SECONDS="1", **FAST_LEASES)
    migrate(env)
    engine = create_engine(private_pg.url, pool_pre_ping=True)
    with gunicorn(env, tmp_path) as server:
        token = register(server.base, "blink@example.com")
        project = new_project(server.base, token)
        words = [f"w{i} " for i in range(30)]
        fake.script("responses", Scenario(deltas=words, token_delay_ms=40))
        stopped: list[bool] = []

        def stop_database(count: int) -> None:
            if count == 3 and not stopped:  # start, then two deltas
                private_pg.stop("immediate")
                stopped.append(True)

        raw = stream_chat(server, token, project, "while it blinks", on_event=stop_database)
        events, _ = parse_sse(raw)
        name, data = events[-1]
        # The client saw the whole reply and a terminal event that tells the truth.
        assert name == "done", events[-3:]
        assert data["stored"] is False
        assert data["message"]["content"] == "".join(words)
        assert len(list((tmp_path / "spool").glob("*.json"))) == 1

        private_pg.start()
        found = poke_until(server, engine, project, lambda r: r[-1][1] == "complete")
        assert found == [
            ("user", "complete", "while it blinks", None),
            ("assistant", "complete", "".join(words), None),
        ]
        assert list((tmp_path / "spool").glob("*.json")) == []
    engine.dispose()
