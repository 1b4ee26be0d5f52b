"""The storage quota and the per-file upload count through gunicorn as production runs it: two
gevent worker processes, rate-limit counts in Redis, OpenAI copies to the fake provider. One
account's burst of concurrent uploads stores what fits its quota and no more (across both
processes), copies only that to OpenAI, is then held to RATELIMIT_UPLOAD counted per file, and
another account uploads as before."""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tools.servers import free_port, gunicorn, migrate, new_project, register, server_env

pytestmark = pytest.mark.server  # gunicorn or a private server per test or module

REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
KB = 1024
MIB = 1024 * KB


def blob(size: int, tag: str) -> bytes:
    head = f"{tag}\n".encode()
    return head + b"x" * (size - len(head))


@pytest.fixture
def server(fake, tmp_path, server_database):
    fake.reset()
    env = server_env(
        server_database,
        free_port(),
        WEB_CONCURRENCY="2",
        UPLOAD_DIR=str(tmp_path / "uploads"),
        OPENAI_API_KEY="test-openai-key",
        OPENAI_BASE_URL=fake.openai_base_url,
        STORAGE_QUOTA_USER_MB="3",
        RATELIMIT_ENABLED="true",
        RATELIMIT_STORAGE_URI=REDIS,
        RATELIMIT_KEY_PREFIX=f"quota-server-{uuid.uuid4().hex}",
        RATELIMIT_UPLOAD="20 per minute",
    )
    migrate(env)
    with gunicorn(env, tmp_path) as running:
        yield running


def wait_for(done, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def uploader(base: str, token: str, project_id: int):
    client = httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60, trust_env=False
    )

    def send(name: str, content: bytes) -> httpx.Response:
        return client.post(f"/api/projects/{project_id}/files", files={"file": (name, content)})

    return client, send


def test_one_accounts_upload_burst_is_held_to_its_quota_and_count(server, fake):
    assert len(server.workers()) == 2
    attacker = register(server.base, "burst@example.com")
    project_id = new_project(server.base, attacker)
    client, send = uploader(server.base, attacker, project_id)
    with client, ThreadPoolExecutor(16) as pool:
        # Sixteen 900 KB files at once, spread over both workers: 3 MB of quota holds three.
        burst = list(pool.map(lambda i: send(f"b{i}.txt", blob(900 * KB, f"burst {i}")), range(16)))
        statuses = sorted(r.status_code for r in burst)
        assert statuses == [201] * 3 + [413] * 13, [r.text[:200] for r in burst]
        refused = next(r.json()["error"] for r in burst if r.status_code == 413)
        assert refused["code"] == "storage_quota_exceeded"
        assert refused["quota"]["name"] == "user_bytes" and refused["quota"]["limit"] == 3 * MIB
        wait_for(lambda: len(fake.calls("files")) >= 3)  # the copies are jobs
        time.sleep(0.3)
        assert len(fake.calls("files")) == 3  # only what was stored went to OpenAI

        # Every one of those sixteen counted: four more files, then the limit (20 per minute).
        small = [send(f"s{i}.txt", f"small {i}".encode()).status_code for i in range(5)]
        assert small == [201, 201, 201, 201, 429]
        storage = client.get(f"/api/projects/{project_id}/files").json()["storage"]
        assert storage["user"]["files"] == 7 and storage["user"]["bytes"] <= 3 * MIB

    victim = register(server.base, "victim@example.com")
    client, send = uploader(server.base, victim, new_project(server.base, victim))
    with client:
        resp = send("mine.txt", blob(900 * KB, "victim"))
        assert resp.status_code == 201, resp.text
        assert resp.json()["openai"]["status"] == "pending"  # a job makes the copy
        storage = client.get(f"/api/projects/{resp.json()['project_id']}/files").json()["storage"]
        assert storage["user"] == {"bytes": 900 * KB, "files": 1, "max_bytes": 3 * MIB}
