"""Turns across real processes: two gunicorn servers (two "machines") on one database, with and
without Redis, against the fake provider. Stop and attach from the other server, ``kill -9`` of
the generating worker with a reader elsewhere, Redis stopped mid-turn (a private
``redis-server``), and a client leaving at each phase of a reply."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from contextlib import ExitStack

import httpx
import pytest
from sqlalchemy import create_engine

from tests.fake_provider import Scenario
from tests.servers import PrivateRedis, gunicorn, migrate, new_project, provider_env, register
from tests.servers import message_rows as rows
from tests.sse import parse_sse

REDIS = os.environ.get("TEST_BROKER_REDIS_URL", "redis://127.0.0.1:6379/11")
FAST = {
    "CHAT_CHECKPOINT_SECONDS": "0.2",
    "CHAT_REPLY_LEASE_SECONDS": "1",
    "CHAT_HEARTBEAT_SECONDS": "0.2",
    "CHAT_RESUME_POLL_SECONDS": "0.1",
    "MAINTENANCE_SECONDS": "0.2",
}


def two_servers(stack: ExitStack, fake, tmp_path, database_url, **settings):
    """Servers A and B: separate gunicorn masters on one database (and one Redis, if given)."""
    servers = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        env = provider_env(fake, folder, database_url, **FAST, **settings)
        env["UPLOAD_DIR"] = str(tmp_path / "uploads")  # one machine's disk for both
        if name == "a":
            migrate(env)
        servers.append(stack.enter_context(gunicorn(env, folder)))
    return servers


class Reader(threading.Thread):
    """Reads one SSE response to its end in the background; ``turn_id`` once ``start`` came."""

    def __init__(self, method: str, url: str, token: str, **kw) -> None:
        super().__init__(daemon=True)
        self.args = (method, url)
        self.kw = {"headers": {"Authorization": f"Bearer {token}"}, **kw}
        self.raw = ""
        self.started = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with (
                httpx.Client(trust_env=False, timeout=60) as client,
                client.stream(*self.args, **self.kw) as r,
            ):
                for chunk in r.iter_text():
                    self.raw += chunk
                    if "event: delta" in self.raw:
                        self.started.set()
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.started.set()

    def events(self):
        return parse_sse(self.raw)[0]

    def text(self) -> str:
        return "".join(d["text"] for n, d in self.events() if n == "delta")


def start_chat(base, token, project, message="a long one") -> tuple[Reader, int]:
    reader = Reader(
        "POST",
        f"{base}/api/projects/{project}/chat",
        token,
        json={"message": message, "stream": True},
    )
    reader.start()
    assert reader.started.wait(20)
    start = reader.raw.split("event: start\ndata: ")[1].split("\n")[0]
    return reader, json.loads(start)["turn_id"]


def attach(base, token, turn_id) -> Reader:
    reader = Reader("GET", f"{base}/api/turns/{turn_id}/events", token)
    reader.start()
    return reader


def stop(base, token, turn_id) -> dict:
    r = httpx.post(
        f"{base}/api/turns/{turn_id}/stop",
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("broker", ["redis", "none"])
def test_attach_and_stop_from_the_other_server(fake, tmp_path, server_database, broker):
    """With Redis, server B reads A's turn live and its Stop reaches A at once. Without it, B
    reads the turn from the database and its Stop reaches A at A's next checkpoint."""
    fake.reset()
    settings = {"REDIS_URL": REDIS, "REDIS_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}:"}
    with ExitStack() as stack:
        a, b = two_servers(
            stack, fake, tmp_path, server_database, **(settings if broker == "redis" else {})
        )
        token = register(a.base, "two@example.com")
        project = new_project(a.base, token)
        fake.script("responses", Scenario(deltas=[f"w{i} " for i in range(400)], token_delay_ms=10))
        on_a, turn_id = start_chat(a.base, token, project)
        on_b = attach(b.base, token, turn_id)
        time.sleep(0.5)
        assert stop(b.base, token, turn_id)["status"] == "stopping"
        on_a.join(15)
        on_b.join(15)

        for reader in (on_a, on_b):
            name, data = reader.events()[-1]
            assert name == "done" and data["message"]["status"] == "incomplete", reader.raw[-300:]
        engine = create_engine(server_database)
        (user, reply) = rows(engine, project)
        engine.dispose()
        assert reply[:2] == ("assistant", "incomplete")
        assert reply[2] == on_a.events()[-1][1]["message"]["content"]
        assert on_a.text() == reply[2]  # A showed exactly what was stored
        if broker == "redis":
            assert on_b.text() == reply[2]  # B saw the same events, through Redis
        else:
            assert [n for n, _ in on_b.events()][:1] == ["snapshot"]  # B read the database
        assert 0 < len(reply[2].split()) < 400
        assert fake.wait_for_disconnects(1)


def test_kill_9_mid_turn_ends_the_readers_elsewhere_and_retry_works(
    fake, tmp_path, server_database
):
    fake.reset()
    settings = {"REDIS_URL": REDIS, "REDIS_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}:"}
    with ExitStack() as stack:
        a, b = two_servers(stack, fake, tmp_path, server_database, **settings)
        token = register(a.base, "kill@example.com")
        project = new_project(a.base, token)
        fake.script("responses", Scenario(deltas=[f"w{i} " for i in range(400)], token_delay_ms=10))
        on_a, turn_id = start_chat(a.base, token, project)
        on_b = attach(b.base, token, turn_id)
        time.sleep(0.6)  # checkpoints have run
        a.kill_workers()
        on_b.join(20)  # within the lease (1 s) and a heartbeat or two

        name, data = on_b.events()[-1]
        assert name == "error" and data["error"]["code"] == "interrupted", on_b.raw[-300:]
        assert data["message"]["status"] == "interrupted" and data["message"]["content"]

        fake.script("responses", Scenario(text="Second try."))
        conversation = data["message"]["conversation_id"]
        r = httpx.post(
            f"{b.base}/api/conversations/{conversation}/regenerate",
            headers={"Authorization": f"Bearer {token}"},
            json={"stream": False},
            trust_env=False,
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["reply"] == "Second try."
        engine = create_engine(server_database)
        stored = rows(engine, project)
        engine.dispose()
        assert [s[1] for s in stored] == ["complete", "interrupted", "complete"]


@pytest.fixture
def private_redis():
    redis = PrivateRedis().start()
    yield redis
    redis.stop()


def test_redis_stopped_mid_turn_the_turn_completes_and_readyz_says_so(
    fake, tmp_path, server_database, private_redis
):
    fake.reset()
    with ExitStack() as stack:
        a, b = two_servers(stack, fake, tmp_path, server_database, REDIS_URL=private_redis.url)
        token = register(a.base, "redis@example.com")
        project = new_project(a.base, token)
        words = [f"w{i} " for i in range(60)]
        fake.script("responses", Scenario(deltas=words, token_delay_ms=20))
        on_a, turn_id = start_chat(a.base, token, project)
        on_b = attach(b.base, token, turn_id)
        private_redis.stop()
        on_a.join(20)
        on_b.join(20)

        # The stream that started the turn reads this process's own log: it never noticed.
        assert on_a.events()[-1][0] == "done" and on_a.text() == "".join(words)
        # The other server lost Redis: it reads the database and still ends with the reply.
        name, data = on_b.events()[-1]
        assert name == "done" and data["message"]["content"] == "".join(words)
        ready = httpx.get(f"{a.base}/readyz", trust_env=False).json()
        assert ready == {
            "status": "degraded",
            "checks": {"database": "ok", "storage": "ok", "redis": "unavailable"},
        }
        assert "Redis unavailable" in a.log()


@pytest.mark.parametrize("leave_at", ["before the first token", "mid-stream", "at the last token"])
def test_a_client_leaving_at_any_phase_leaves_the_reply_complete(
    fake, tmp_path, server_database, leave_at
):
    fake.reset()
    words = [f"w{i} " for i in range(20)]
    seen = {
        "before the first token": lambda raw: "event: start" in raw,
        "mid-stream": lambda raw: raw.count("event: delta") >= 3,
        "at the last token": lambda raw: "w19" in raw,
    }[leave_at]
    with ExitStack() as stack:
        (a, _b) = two_servers(stack, fake, tmp_path, server_database)
        token = register(a.base, "leave@example.com")
        project = new_project(a.base, token)
        fake.script("responses", Scenario(deltas=words, token_delay_ms=20, ttft_ms=200))
        with (
            httpx.Client(trust_env=False, timeout=30) as client,
            client.stream(
                "POST",
                f"{a.base}/api/projects/{project}/chat",
                json={"message": "leave", "stream": True},
                headers={"Authorization": f"Bearer {token}"},
            ) as r,
        ):
            raw = ""
            for chunk in r.iter_text(chunk_size=1):
                raw += chunk
                if seen(raw):
                    break
        engine = create_engine(server_database)
        deadline = time.monotonic() + 10
        while (stored := rows(engine, project))[-1][1] == "streaming":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        engine.dispose()
        assert stored == [
            ("user", "complete", "leave", None),
            ("assistant", "complete", "".join(words), None),
        ]
        assert fake.disconnects == 0
