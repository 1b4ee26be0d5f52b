"""Real servers for the tests that need them, on loopback only, each stopped by its test:

- the app as production runs it: ``flask db upgrade``, then gunicorn with ``gunicorn.conf.py``
  (gevent workers) in its own process (provider faults, request bodies as gunicorn hands them
  over, ``kill -9`` of a worker);
- a private PostgreSQL cluster that a test may stop and start (a database that goes away),
  never the shared one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(database_url: str, port: int, **settings: str) -> dict[str, str]:
    """A production environment on loopback: no provider keys unless given, no rate limits,
    one worker, cheap bcrypt, background jobs in the web process."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OPENROUTER_"))},
        "APP_ENV": "production",
        "SECRET_KEY": "server-tests-0123456789-abcdefghijklmnopqrstuvw",
        "SESSION_COOKIE_SECURE": "false",  # plain HTTP on loopback
        "DATABASE_URL": database_url,
        "RATELIMIT_ENABLED": "false",
        "BCRYPT_ROUNDS": "4",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "FLASK_APP": "app",
        # Jobs run in the web process, on a queue of its own (tests/test_jobs.py runs the
        # worker process): parallel servers never share a queue.
        "QUEUE_URL": "memory://",
        "QUEUE_IN_PROCESS": "true",
        # No title call after a new conversation's first reply (a job: it would take a
        # scripted reply of the fake), as in the in-process tests (conftest.base_config).
        "CHAT_TITLES": "false",
        **settings,
    }
    env.pop("TEST_DATABASE_URL", None)
    return env


def provider_env(fake, folder: Path, database_url: str, **settings: str) -> dict[str, str]:
    """``server_env`` for a server that calls the fake provider (OpenAI first, OpenRouter as
    fallback), with its uploads and reply spool in ``folder``."""
    return server_env(
        database_url,
        free_port(),
        UPLOAD_DIR=str(folder / "uploads"),
        REPLY_SPOOL_DIR=str(folder / "spool"),
        OPENAI_API_KEY="test-openai-key",
        OPENAI_BASE_URL=fake.openai_base_url,
        OPENROUTER_BASE_URL=fake.openrouter_base_url,
        **settings,
    )


@contextmanager
def in_thread(app) -> Iterator[str]:
    """``app`` on Werkzeug's threaded server on loopback, in this process, until the block ends;
    yields its base URL. For tests that need real connections without a separate process."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, _always_closed(app), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _always_closed(app):
    """``app`` whose responses are closed even when the client drops mid-response: Werkzeug's
    dev server then raises out of its own clean-up (reading a reset socket) before it closes the
    response, which leaves a file being sent (a static file the browser gave up on) open for
    the garbage collector to report as a ``ResourceWarning`` in a later test. The generator's
    ``finally`` closes it, when the server closes the generator or when it is collected."""

    def wsgi(environ, start_response):
        response = app(environ, start_response)
        try:
            yield from response
        finally:
            if hasattr(response, "close"):
                response.close()

    return wsgi


def migrate(env: Mapping[str, str]) -> None:
    subprocess.run(
        [str(BIN / "flask"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True
    )


@dataclass
class Server:
    base: str
    proc: subprocess.Popen
    log_path: Path

    def workers(self) -> list[int]:
        """The worker processes' ids (children of the gunicorn master)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill_workers(self) -> list[int]:
        """``kill -9`` every worker; the master starts new ones (``wait_ready``)."""
        pids = self.workers()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    def wait_ready(self, path: str = "/healthz", timeout: float = 60) -> None:
        _wait_ready(self.base + path, self.proc, self.log_path, timeout)


def _wait_ready(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, f"see {log_path}"
        time.sleep(0.05)


@contextmanager
def gunicorn(env: Mapping[str, str], log_dir: Path, *, ready: str = "/healthz") -> Iterator[Server]:
    """gunicorn in its own process until the block ends; waits until ``ready`` answers 200."""
    log_path = log_dir / "gunicorn.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "app:create_app()"],
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{env['PORT']}"
            _wait_ready(base + ready, proc, log_path)
            yield Server(base, proc, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@contextmanager
def worker(env: Mapping[str, str], log_dir: Path, name: str = "worker") -> Iterator[Server]:
    """``flask worker`` (app/worker.py) in its own process until the block ends (SIGINT first,
    as Ctrl-C: running jobs end); ``Server.base`` is empty. Waits for its start line."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "flask"), "worker"],
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while "worker started" not in log_path.read_text(errors="replace"):
                assert proc.poll() is None and time.monotonic() < deadline, f"see {log_path}"
                time.sleep(0.05)
            yield Server("", proc, log_path)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def register(base: str, email: str, password: str = "correct horse battery") -> str:
    """A new account through the API; returns its bearer token."""
    r = httpx.post(
        f"{base}/api/auth/register", json={"email": email, "password": password}, trust_env=False
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


def new_project(base: str, token: str, name: str = "Live") -> int:
    r = httpx.post(
        f"{base}/api/projects",
        json={"name": name, "system_prompt": "You answer briefly."},
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


class PrivatePostgres:
    """``initdb`` + ``pg_ctl`` on loopback, in a folder and on a port of its own. ``postgres``
    refuses to run as root, so under root every command runs as the ``postgres`` system user
    (``runuser``)."""

    def __init__(self, directory: Path | None = None) -> None:
        """A throwaway cluster in a new temporary folder, or (``directory``) one kept there
        between runs (``make cluster``): initialised once, started again on the next run."""
        assert PG_BINS, "PostgreSQL server binaries are needed (Debian: postgresql)"
        self.bin = PG_BINS[-1].parent
        self.port = free_port()
        # Not pytest's tmp_path: its root-only parent directory is closed to the postgres user.
        self.dir = directory or Path(tempfile.mkdtemp(prefix="prompthub-pg-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.kept = directory is not None
        self.data = self.dir / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        # Its own session: a Ctrl-C in the terminal reaches whoever started it, not the server.
        subprocess.run(command, check=True, capture_output=True, timeout=60, start_new_session=True)

    def init(self) -> PrivatePostgres:
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        return self

    def server_pid(self) -> int | None:
        """The pid of a server running on this data folder (its ``postmaster.pid``), else None."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # a stale file: PostgreSQL replaces it at its next start
        except PermissionError:
            pass  # alive, under another user
        return pid

    def start(self) -> PrivatePostgres:
        # A kept folder may sit at any depth: TCP only (a socket path is limited to 107 bytes).
        # fsync=off is a demo and test setting: PostgreSQL does not wait for the disk, so a
        # power cut or an operating system crash can corrupt this cluster (a crash of
        # PostgreSQL alone cannot). Never for data anyone keeps (docs/deploy.md, "make cluster").
        sockets = "-c unix_socket_directories=''" if self.kept else f"-k {self.dir}"
        options = f"-p {self.port} {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.dir / "postgres.log")
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        return self

    def create_database(self, name: str) -> str:
        """``name`` created unless it exists; its URL."""
        admin = self.url.replace("postgresql://", "postgresql+psycopg://")
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                exists = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).first()
                if not exists:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self, mode: str = "fast") -> None:
        """``fast`` closes sessions cleanly; ``immediate`` is a crash (no shutdown checkpoint)."""
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A throwaway ``redis-server`` on its own port, no persistence; a test stops it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches its starter, not the server
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            assert self.proc.poll() is None and time.monotonic() < deadline, "redis-server"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def message_rows(engine, project_id: int) -> list[tuple]:
    """(role, status, content, error) of every message of a project, oldest first."""
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT m.role, m.status, m.content, m.error FROM messages m"
                    " JOIN conversations c ON c.id = m.conversation_id"
                    " WHERE c.project_id = :p ORDER BY m.id"
                ),
                {"p": project_id},
            )
        ]
