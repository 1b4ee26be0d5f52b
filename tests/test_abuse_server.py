"""One account cannot take the server down for another (issue 26), through gunicorn as
production runs it: gevent workers, Redis for the turn broker and the rate limits (on), against
the fake provider over real HTTP.

The attack of finding 1: an account opens far more readers of turn events than the server has
connections for. The server here has one worker of 100 connections (``worker_connections``),
so without the caps the attacker's held readers alone would take every connection. With them,
the attacker holds at most ``TURN_READERS_PER_USER`` and is told 429 for the rest, and another
user's requests are answered as usual: the stated bound is a p95 under 1 s (an idle server
answers in milliseconds; a starved one not at all, so the bound separates the two without being
a benchmark)."""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid

import httpx
import pytest
import redis

from tests.sse import turn_id_of
from tools.fake_provider import Scenario
from tools.servers import gunicorn, migrate, new_project, provider_env, register

pytestmark = pytest.mark.server  # gunicorn or a private server per test or module

BROKER_REDIS = os.environ.get("TEST_BROKER_REDIS_URL", "redis://127.0.0.1:6379/11")
LIMITS_REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ATTACK_READERS = 300
VICTIM_P95_BOUND_S = 1.0


def chat_turn(base: str, token: str, project: int) -> int:
    """Start a (long) streamed reply and leave at once: the turn goes on without a reader."""
    with (
        httpx.Client(trust_env=False, timeout=30) as client,
        client.stream(
            "POST",
            f"{base}/api/projects/{project}/chat",
            json={"message": "a long one", "stream": True},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        assert r.status_code == 200
        received = ""
        for chunk in r.iter_text():
            received += chunk
            if "event: start" in received and "\n\n" in received.split("event: start")[1]:
                return turn_id_of(received)
    raise AssertionError(received)


class Reader(threading.Thread):
    """One attacking reader: holds its stream open until told to stop."""

    def __init__(self, url: str, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.stop = url, token, stop
        self.status: int | None = None
        self.answered = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Last-Event-ID": "0-99999"}
        try:
            with (
                httpx.Client(trust_env=False, timeout=httpx.Timeout(60, connect=60)) as client,
                client.stream("GET", self.url, headers=headers) as r,
            ):
                self.status = r.status_code
                self.answered.set()
                if r.status_code == 200:
                    self.stop.wait(60)
        except httpx.HTTPError:
            pass
        finally:
            self.answered.set()


def test_an_account_holding_readers_leaves_other_users_unaffected(fake, tmp_path, server_database):
    fake.reset()
    # Long replies: the attacker's turns stay live for the whole attack.
    fake.script("responses", *[Scenario(deltas=["w "] * 400, token_delay_ms=100)] * 8)
    prefix = f"abuse-{uuid.uuid4().hex[:8]}:"
    env = provider_env(
        fake,
        tmp_path,
        server_database,
        WEB_CONCURRENCY="1",
        GUNICORN_WORKER_CONNECTIONS="100",
        REDIS_URL=BROKER_REDIS,
        REDIS_KEY_PREFIX=prefix,
        RATELIMIT_ENABLED="true",
        RATELIMIT_STORAGE_URI=LIMITS_REDIS,
        RATELIMIT_KEY_PREFIX=prefix,
        RATELIMIT_TURN_EVENTS="1000 per minute",  # the open-reader caps are what is tested
    )
    migrate(env)
    stop = threading.Event()
    with gunicorn(env, tmp_path) as server:
        attacker, victim = (
            register(server.base, f"{who}@example.com") for who in ("mallory", "victim")
        )
        attack_project = new_project(server.base, attacker)
        victim_project = new_project(server.base, victim)
        turns = [chat_turn(server.base, attacker, attack_project) for _ in range(6)]

        readers = [
            Reader(f"{server.base}/api/turns/{turns[i % len(turns)]}/events", attacker, stop)
            for i in range(ATTACK_READERS)
        ]
        try:
            for reader in readers:
                reader.start()
            for reader in readers:
                reader.answered.wait(5)
            held = sum(1 for r in readers if r.status == 200)

            timings, failures = [], 0
            headers = {"Authorization": f"Bearer {victim}"}
            with httpx.Client(trust_env=False, timeout=5) as client:
                for _ in range(30):
                    began = time.monotonic()
                    try:
                        r = client.get(
                            f"{server.base}/api/projects/{victim_project}", headers=headers
                        )
                        ok = r.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    timings.append(time.monotonic() - began)
                    failures += not ok
            p95 = statistics.quantiles(timings, n=20)[-1]
        finally:
            stop.set()
            for reader in readers:
                reader.join(10)
            for turn in turns:
                httpx.post(
                    f"{server.base}/api/turns/{turn}/stop",
                    headers={"Authorization": f"Bearer {attacker}"},
                    trust_env=False,
                    timeout=10,
                )

        refused = sum(1 for r in readers if r.status == 429)
        assert failures == 0 and p95 < VICTIM_P95_BOUND_S, (failures, p95, held)
        assert held <= 20, held  # TURN_READERS_PER_USER's default
        assert held + refused == ATTACK_READERS

    # Every reader slot came back once the readers left (released on close, not by lease).
    client = redis.Redis.from_url(BROKER_REDIS)
    try:
        left = [k for k in client.scan_iter(f"{prefix}readers:*") if client.zcard(k)]
        assert left == [], left
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()
