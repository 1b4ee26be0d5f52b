"""Turns across real processes: two gunicorn servers (two "machines") on one database, with and
without Redis, against the fake provider. Stop and attach from the other server, ``kill -9`` of
the generating worker with a reader elsewhere, Redis stopped mid-turn (a private
``redis-server``), and a client leaving at each phase of a reply."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from contextlib import ExitStack

import httpx
import pytest
from sqlalchemy import create_engine

from tests.sse import parse_sse
from tools.fake_provider import Scenario
from tools.servers import PrivateRedis, gunicorn, migrate, new_project, provider_env, register
from tools.servers import message_rows as rows

pytestmark = pytest.mark.server  # gunicorn or a private server per test or module

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
        env = provider_env(fake, folder, database_url, **{**FAST, **settings})
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
        # Rate limits counted in the same Redis, on: its outage must not fail a request.
        a, b = two_servers(
            stack,
            fake,
            tmp_path,
            server_database,
            REDIS_URL=private_redis.url,
            RATELIMIT_ENABLED="true",
            RATELIMIT_STORAGE_URI=private_redis.url,
        )
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
            "checks": {
                "database": "ok",
                "schema": "ok",
                "storage": "ok",
                "ratelimit": "unavailable (counting per process)",
                "redis": "unavailable",
            },
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


# --- a writer that dies, a server that stops (issue 27, items 3 and 4) -----------------------


def _broker_settings(**more: str) -> dict[str, str]:
    return {"REDIS_URL": REDIS, "REDIS_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}:", **more}


def _wait_for(reader: Reader, deltas: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while reader.raw.count("event: delta") < deltas:
        assert reader.is_alive() and time.monotonic() < deadline, reader.raw[-300:]
        time.sleep(0.01)


@pytest.mark.parametrize("noticed_by", ["a reader elsewhere", "the lease sweep"])
def test_a_dead_writer_is_stored_with_every_word_its_readers_saw(
    fake, tmp_path, server_database, noticed_by
):
    """``kill -9`` of the generating worker long before any checkpoint: the reply is stored with
    the text the broker holds, at least what each reader was shown. A reader on the other
    server learns of the death from the writer's heartbeat within seconds (the lease is 30 s
    there); without a reader, the lease sweep stores the same text."""
    fake.reset()
    reader_elsewhere = noticed_by == "a reader elsewhere"
    settings = _broker_settings(
        CHAT_CHECKPOINT_SECONDS="30",  # no checkpoint: the broker alone holds the text
        CHAT_REPLY_LEASE_SECONDS="30" if reader_elsewhere else "3",
        CHAT_WRITER_TTL_SECONDS="1.5",
    )
    with ExitStack() as stack:
        a, b = two_servers(stack, fake, tmp_path, server_database, **settings)
        token = register(a.base, "dead@example.com")
        project = new_project(a.base, token)
        fake.script("responses", Scenario(deltas=[f"w{i} " for i in range(400)], token_delay_ms=10))
        on_a, turn_id = start_chat(a.base, token, project)
        on_b = attach(b.base, token, turn_id) if reader_elsewhere else None
        _wait_for(on_b or on_a, 20)
        a.kill_workers()
        killed = time.monotonic()
        on_a.join(10)
        engine = create_engine(server_database)
        if on_b is not None:
            on_b.join(10)
            told = time.monotonic() - killed
            assert not on_b.is_alive(), "the reader elsewhere was not told"
            name, data = on_b.events()[-1]
            assert name == "error" and data["error"]["code"] == "interrupted", on_b.raw[-300:]
            assert told < 5, told
            print(f"reader told of the dead writer after {told:.2f} s")  # noqa: T201
        deadline = time.monotonic() + 20
        while (stored := rows(engine, project))[-1][1] == "streaming":
            assert time.monotonic() < deadline, "the lease sweep did not end the reply"
            httpx.get(f"{b.base}/healthz", trust_env=False)  # chores run on requests
            time.sleep(0.1)
        engine.dispose()
        (_user, reply) = stored
        assert reply[:2] == ("assistant", "interrupted")
        seen = [on_a.text()] + ([on_b.text()] if on_b else [])
        print(f"stored {len(reply[2].split())} words; readers saw {[len(s.split()) for s in seen]}")  # noqa: T201
        assert seen[0] and all(reply[2].startswith(text) for text in seen), (reply[2], seen)
        if on_b is not None:
            assert data["message"]["content"] == reply[2]


def _leave_after_start(base: str, token: str, project: int, message: str) -> int:
    """Start a turn and leave after its first delta (it goes on, detached); its id."""
    raw = ""
    with (
        httpx.Client(trust_env=False, timeout=30) as client,
        client.stream(
            "POST",
            f"{base}/api/projects/{project}/chat",
            json={"message": message, "stream": True},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        for chunk in r.iter_text():
            raw += chunk
            if "event: delta" in raw:
                break
    return json.loads(raw.split("event: start\ndata: ")[1].split("\n")[0])["turn_id"]


def test_sigterm_lets_replies_finish_then_stores_the_rest_as_interrupted_at_once(
    fake, tmp_path, server_database
):
    """SIGTERM to a server with three replies running: the short one finishes; after
    ``DRAIN_SECONDS`` the two long ones (one whose client is connected, one whose client left)
    are stored as interrupted with all their text, and their readers on the other server are
    told at once, not after the lease (30 s here). The server exits well inside
    ``graceful_timeout``."""
    fake.reset()
    drain_seconds = 2.0
    settings = _broker_settings(CHAT_REPLY_LEASE_SECONDS="30", DRAIN_SECONDS=str(drain_seconds))
    long_reply = Scenario(deltas=[f"w{i} " for i in range(600)], token_delay_ms=20)
    short_reply = [f"s{i} " for i in range(30)]
    with ExitStack() as stack:
        a, b = two_servers(stack, fake, tmp_path, server_database, **settings)
        token = register(a.base, "drain@example.com")
        project = new_project(a.base, token)
        fake.script(
            "responses", long_reply, long_reply, Scenario(deltas=short_reply, token_delay_ms=50)
        )
        connected, connected_id = start_chat(a.base, token, project, "connected")
        left_id = _leave_after_start(a.base, token, project, "left")
        on_b = [attach(b.base, token, connected_id), attach(b.base, token, left_id)]
        short, _ = start_chat(a.base, token, project, "short")
        for reader in on_b:
            _wait_for(reader, 3)
        a.proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        for reader in (connected, short, *on_b):
            reader.join(25)
        told = time.monotonic() - stopping
        assert a.proc.wait(20) == 0
        exited = time.monotonic() - stopping
        print(f"readers told after {told:.2f} s, server exited after {exited:.2f} s")  # noqa: T201

        assert short.events()[-1][0] == "done" and short.text() == "".join(short_reply)
        for reader in (connected, *on_b):
            name, data = reader.events()[-1]
            assert name == "error" and data["error"]["code"] == "interrupted", reader.raw[-300:]
            assert data["message"]["content"] == reader.text()  # stored: all it was shown
        assert connected.text() == on_b[0].text()
        assert told < drain_seconds + 10  # the drain, then at once (the lease would be 30 s)
        engine = create_engine(server_database)
        stored = rows(engine, project)
        engine.dispose()
        replies = {content: status for role, status, content, _ in stored if role == "assistant"}
        assert replies == {
            connected.text(): "interrupted",
            on_b[1].text(): "interrupted",
            "".join(short_reply): "complete",
        }


def test_a_quick_shutdown_stores_every_reply_as_interrupted_at_once(
    fake, tmp_path, server_database
):
    """SIGINT (gunicorn's quick stop: SIGQUIT to its workers) does not wait for replies, but
    each is stored as interrupted with its text and its reader on the other server is told at
    once (the lease is 30 s here)."""
    fake.reset()
    settings = _broker_settings(CHAT_REPLY_LEASE_SECONDS="30")
    with ExitStack() as stack:
        a, b = two_servers(stack, fake, tmp_path, server_database, **settings)
        token = register(a.base, "quick@example.com")
        project = new_project(a.base, token)
        fake.script("responses", Scenario(deltas=[f"w{i} " for i in range(600)], token_delay_ms=20))
        on_a, turn_id = start_chat(a.base, token, project)
        on_b = attach(b.base, token, turn_id)
        _wait_for(on_b, 5)
        a.proc.send_signal(signal.SIGINT)
        on_b.join(15)
        assert a.proc.wait(20) == 0
        name, data = on_b.events()[-1]
        assert name == "error" and data["error"]["code"] == "interrupted", on_b.raw[-300:]
        engine = create_engine(server_database)
        (_user, reply) = rows(engine, project)
        engine.dispose()
        assert reply[:2] == ("assistant", "interrupted")
        assert reply[2] == on_b.text() and reply[2].startswith(on_a.text())
