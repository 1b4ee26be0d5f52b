"""Real servers for fault tests: gunicorn running the app as ``make serve`` does, and a private
PostgreSQL that a test may stop and start (never the shared one).

Everything listens on loopback ports of its own and is stopped by the test that started it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    assert found, "PostgreSQL server binaries are needed (Debian: postgresql)"
    return found[-1].parent


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on its own port, in a folder of its own.

    ``postgres`` refuses to run as root, so under root it runs as the ``postgres`` system
    user (``runuser``)."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="prompthub-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> PrivatePostgres:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.folder / "log"),
            "-w",
            "start",
        )
        return self

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)


class Gunicorn:
    """The app under gunicorn with ``gunicorn.conf.py`` (gevent), on a migrated database."""

    def __init__(self, *, database_url: str, folder: Path, fake, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OPENROUTER_"))},
            "APP_ENV": "production",
            "SECRET_KEY": "live-server-tests-0123456789-abcdefghijklmnopq",
            "SESSION_COOKIE_SECURE": "false",  # plain HTTP on loopback
            "DATABASE_URL": database_url,
            "UPLOAD_DIR": str(folder / "uploads"),
            "REPLY_SPOOL_DIR": str(folder / "spool"),
            "OPENAI_API_KEY": "test-openai-key",
            "OPENAI_BASE_URL": fake.openai_base_url,
            "OPENROUTER_BASE_URL": fake.openrouter_base_url,
            "RATELIMIT_ENABLED": "false",
            "BCRYPT_ROUNDS": "4",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "1",
            "FLASK_APP": "app",
            **env,
        }
        self.env.pop("TEST_DATABASE_URL", None)
        self.proc: subprocess.Popen | None = None

    def migrate(self) -> None:
        subprocess.run(
            [str(BIN / "flask"), "db", "upgrade"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> Gunicorn:
        self.migrate()
        self.log = (self.folder / "gunicorn.log").open("wb")
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "app:create_app()"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, f"gunicorn exited: see {self.log.name}"
            assert time.monotonic() < deadline, f"gunicorn not ready: see {self.log.name}"
            time.sleep(0.05)

    def workers(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in out.stdout.split()]

    def kill_workers(self) -> list[int]:
        """``kill -9`` every worker (the master starts new ones)."""
        pids = self.workers()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def register(base: str, email: str) -> str:
    r = httpx.post(
        f"{base}/api/auth/register",
        json={"email": email, "password": "correct horse battery"},
        trust_env=False,
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
