"""The app as production runs it: ``flask db upgrade``, then gunicorn with ``gunicorn.conf.py``
(gevent workers) in its own process, on loopback only. Used by the tests that need a real
server: provider faults, request bodies as gunicorn hands them over, a database that goes away.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(database_url: str, port: int, **settings: str) -> dict[str, str]:
    """A production environment on loopback: no provider keys unless given, no rate limits,
    one worker, cheap bcrypt."""
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
        **settings,
    }
    env.pop("TEST_DATABASE_URL", None)
    return env


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
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + ready, timeout=1, trust_env=False).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, f"see {log_path}"
                time.sleep(0.05)
            yield Server(base, proc, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
