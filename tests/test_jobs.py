"""Background work on the job queue (issue 35, item 5), with real processes: ``flask worker``
beside gunicorn, a worker killed mid-job, the queue's Redis down while jobs wait, and the
embedded default (an SQLite queue in instance/) under the development server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, update

from app.models import Conversation, StoredFile
from app.models.base import utcnow
from tools.fake_provider import Scenario
from tools.pdfs import bomb_pdf, text_pdf
from tools.servers import (
    BIN,
    ROOT,
    PrivateRedis,
    _wait_ready,
    free_port,
    gunicorn,
    migrate,
    new_project,
    register,
    server_env,
    worker,
)

pytestmark = pytest.mark.server  # gunicorn, flask worker, flask run, redis-server

# The queue's Redis db for these tests (flushed by them).
QUEUE_REDIS = os.environ.get("TEST_QUEUE_REDIS_URL", "redis://127.0.0.1:6379/5")


def _flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def _web_and_worker_env(tmp_path: Path, queue_url: str, **settings: str) -> dict[str, str]:
    """gunicorn that queues jobs and runs none (production's default), and a worker."""
    env = server_env(
        f"sqlite:///{tmp_path / 'server.db'}",
        free_port(),
        UPLOAD_DIR=str(tmp_path / "uploads"),
        REPLY_SPOOL_DIR=str(tmp_path / "spool"),
        QUEUE_URL=queue_url,
        QUEUE_IN_PROCESS="false",
        MAINTENANCE_SECONDS="1",
        **settings,
    )
    migrate(env)
    return env


def _files(client: httpx.Client, url: str) -> dict[int, str]:
    return {f["id"]: f["text"]["status"] for f in client.get(url).json()["data"]}


def _wait_statuses(client, url, done, timeout=60.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (statuses := _files(client, url)) and not done(statuses):
        assert time.monotonic() < deadline, statuses
        time.sleep(0.1)
    return statuses


def _sandbox_of(pid: int) -> int | None:
    children = Path(f"/proc/{pid}/task").glob("*/children")
    for child in " ".join(p.read_text() for p in children).split():
        if b"sandbox.py" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    return None


def test_a_worker_killed_mid_job_runs_it_again_once_its_lease_is_over(tmp_path):
    """Huey drops a message once a worker takes it: the row's lease is the record. A worker is
    killed (SIGKILL) while its sandbox parses a PDF; once the lease is over (moved back here,
    instead of waiting EXTRACT_WALL_SECONDS + 30 s) a new worker's sweep queues the file again,
    and it is written once. Before: there was no worker process (``No such command 'worker'``)."""
    _flush(QUEUE_REDIS)
    env = _web_and_worker_env(tmp_path, QUEUE_REDIS, EXTRACT_CPU_SECONDS="2")
    with gunicorn(env, tmp_path) as server:
        token = register(server.base, "kill@example.com")
        url = f"/api/projects/{new_project(server.base, token)}/files"
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.base, headers=auth, timeout=10, trust_env=False) as c:
            with worker(env, tmp_path, "first") as first:
                r = c.post(url, files={"file": ("bomb.pdf", bomb_pdf(pages=30))})
                assert r.status_code == 201 and r.json()["text"]["status"] == "pending", r.text
                file_id = r.json()["id"]
                deadline = time.monotonic() + 30
                while (child := _sandbox_of(first.proc.pid)) is None:
                    assert time.monotonic() < deadline, first.log()
                    time.sleep(0.02)
                os.kill(first.proc.pid, signal.SIGKILL)  # mid-job
                first.proc.wait(timeout=10)
            assert _files(c, url) == {file_id: "pending"}
            # The orphaned child ends at its CPU limit; its answer has nobody to read it.
            deadline = time.monotonic() + 30
            while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)

            engine = create_engine(env["DATABASE_URL"])
            with engine.begin() as conn:  # the lease is over
                conn.execute(
                    update(StoredFile)
                    .where(StoredFile.id == file_id)
                    .values(text_claimed_at=utcnow() - timedelta(hours=1))
                )
            engine.dispose()
            with worker(env, tmp_path, "second") as second:
                statuses = _wait_statuses(c, url, lambda s: s[file_id] != "pending")
                assert statuses == {file_id: "too_complex"}
                time.sleep(1.5)  # another sweep: nothing is queued or written again
                log = second.log()
    runs = re.findall(rf"file text extracted: file={file_id} ", first.log() + log)
    assert len(runs) == 1, log


def test_a_worker_killed_mid_title_call_runs_it_again_and_titles_once(tmp_path, fake):
    """The title job on a real worker (the queue an SQLite file both processes share), the
    provider the fake over HTTP. The worker is killed (SIGKILL) while the title call hangs;
    once the claim's lease is over (moved back here) a new worker's sweep queues the job
    again, which calls once more and writes the title once. Before: the page asked for the
    title (``POST …/title``); no reply ever queued one."""
    fake.reset()
    fake.script(
        "responses",
        Scenario(text="Thirty days."),
        Scenario(text="Lost title", hang_s=20),
        Scenario(text="Refund timelines"),
    )
    env = _web_and_worker_env(
        tmp_path,
        f"sqlite:///{tmp_path / 'queue.db'}",
        OPENAI_API_KEY="test-openai-key",
        OPENAI_BASE_URL=fake.openai_base_url,
        CHAT_TITLES="true",
        LLM_TIMEOUT_SECONDS="10",
    )
    with gunicorn(env, tmp_path) as server:
        token = register(server.base, "titles@example.com")
        project = new_project(server.base, token)
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.base, headers=auth, timeout=10, trust_env=False) as c:
            with worker(env, tmp_path, "first") as first:
                r = c.post(f"/api/projects/{project}/chat", json={"message": "Refunds?"})
                assert r.status_code == 200 and r.json()["reply"] == "Thirty days.", r.text
                cid = r.json()["conversation_id"]
                deadline = time.monotonic() + 30
                while len(fake.calls("responses")) < 2:  # the title call is out, and hangs
                    assert time.monotonic() < deadline, first.log()
                    time.sleep(0.02)
                os.kill(first.proc.pid, signal.SIGKILL)  # mid-job
                first.proc.wait(timeout=10)
            assert c.get(f"/api/conversations/{cid}").json()["title"] == "Refunds?"

            engine = create_engine(env["DATABASE_URL"])
            with engine.begin() as conn:  # the lease is over
                conn.execute(
                    update(Conversation)
                    .where(Conversation.id == cid)
                    .values(title_claimed_at=utcnow() - timedelta(hours=1))
                )
            with worker(env, tmp_path, "second") as second:
                deadline = time.monotonic() + 30
                while c.get(f"/api/conversations/{cid}").json()["title"] == "Refunds?":
                    assert time.monotonic() < deadline, second.log()
                    time.sleep(0.1)
                assert c.get(f"/api/conversations/{cid}").json()["title"] == "Refund timelines"
                time.sleep(1.5)  # another sweep: nothing is queued or called again
            with engine.connect() as conn:
                state = conn.execute(
                    select(Conversation.title_state, Conversation.title_attempts).where(
                        Conversation.id == cid
                    )
                ).one()
            engine.dispose()
    assert len(fake.calls("responses")) == 3
    assert tuple(state) == ("done", 2)


def test_the_queues_redis_down_refuses_nothing_and_loses_nothing(tmp_path):
    """Two PDFs are queued while no worker runs, then the queue's Redis dies (and comes back
    empty: no persistence); a third is uploaded meanwhile. The upload answers 201 (the row is
    the record), the web log says once that the queue is away; a worker started meanwhile says
    so in a line and waits, and once Redis is back the sweep queues all three: every file is
    extracted. Rate limiting is on.
    Before: no worker process (``No such command 'worker'``)."""
    redis_server = PrivateRedis().start()
    try:
        env = _web_and_worker_env(tmp_path, redis_server.url, RATELIMIT_ENABLED="true")
        with gunicorn(env, tmp_path) as server:
            token = register(server.base, "outage@example.com")
            url = f"/api/projects/{new_project(server.base, token)}/files"
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=server.base, headers=auth, timeout=10, trust_env=False) as c:
                for i in range(2):
                    r = c.post(url, files={"file": (f"q{i}.pdf", text_pdf(f"queued {i}"))})
                    assert r.status_code == 201, r.text
                redis_server.stop()
                started = time.monotonic()
                r = c.post(url, files={"file": ("down.pdf", text_pdf("while down"))})
                assert r.status_code == 201 and r.json()["text"]["status"] == "pending", r.text
                assert time.monotonic() - started < 8  # the socket timeouts, not a hang
                assert set(_files(c, url).values()) == {"pending"}
                assert server.log().count("job queue unreachable") == 1

                with worker(env, tmp_path) as running:  # starts while Redis is away
                    deadline = time.monotonic() + 10
                    while "job queue unreachable" not in running.log():
                        assert time.monotonic() < deadline, running.log()
                        time.sleep(0.1)
                    redis_server.proc = None
                    redis_server.start()  # same port, empty
                    statuses = _wait_statuses(c, url, lambda s: "pending" not in s.values())
                    assert sorted(statuses.values()) == ["ok", "ok", "ok"]
                    log = running.log()
                assert "Traceback" not in log, log  # the outage in a line, not a trace a poll
    finally:
        redis_server.stop()


def test_the_development_server_runs_jobs_alone_on_the_embedded_queue(tmp_path):
    """``make run`` with nothing configured: ``flask run`` runs the jobs itself from the SQLite
    queue in instance/ (no Redis, no worker process). Before: extraction ran in threads of
    its own and there was no queue file (``assert queue_file.exists()`` failed)."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "OPENROUTER_", "REDIS_", "QUEUE_", "TEST_"))
    }
    env.update(
        APP_ENV="development",
        FLASK_APP="app",
        DATABASE_URL=f"sqlite:///{tmp_path / 'dev.db'}",
        UPLOAD_DIR=str(tmp_path / "uploads"),
        REPLY_SPOOL_DIR=str(tmp_path / "spool"),
        BCRYPT_ROUNDS="4",
        RATELIMIT_ENABLED="false",
    )
    migrate(env)
    queue_file = ROOT / "instance" / "queue.db"
    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "flask"), "run", "--port", str(port), "--no-reload", "--no-debugger"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base + "/healthz", proc, log_path)
            token = register(base, "dev@example.com")
            url = f"/api/projects/{new_project(base, token)}/files"
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=auth, timeout=10, trust_env=False) as c:
                r = c.post(url, files={"file": ("dev.pdf", text_pdf("on the dev server"))})
                assert r.status_code == 201, r.text
                assert _wait_statuses(c, url, lambda s: "pending" not in s.values()) == {
                    r.json()["id"]: "ok"
                }
            assert queue_file.exists()
        finally:
            proc.terminate()
            proc.wait(timeout=15)
