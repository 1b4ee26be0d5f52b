"""Benchmark harness: the fake provider, PostgreSQL and gunicorn as separate processes, measured
from outside with the asyncio load generator (``loadgen.py``) and psutil.

    python -m tools.bench.harness fake                      # can the fake provider hold 200?
    python -m tools.bench.harness streams --threads 128     # platform vs direct, 1..200 streams
    python -m tools.bench.harness streams --worker-class gevent
    python -m tools.bench.harness endpoints                 # rps, history, memory, start time
    python -m tools.bench.harness bombs --worker-class gevent --levels 1,10  # TTFT under PDF bombs
    python -m tools.bench.harness cluster --levels 50 # two nodes via HAProxy vs one node direct

Every run prints one JSON document (``--out`` writes it too) with the machine, the date, the load
average before each measurement, and per level: time to first token (median, p95), total time,
completed streams/s and errors for the platform and for the same request sent straight to the
fake provider, plus the server's CPU per reply (gunicorn master + workers, from /proc via
psutil, which is far less sensitive to other load than wall-clock numbers) and RSS per worker.

``cluster`` runs ``make cluster``'s own ``Cluster`` (tools/cluster.py: its private PostgreSQL and
Redis, two nodes of ``--workers`` gevent workers each, HAProxy) against the asyncio fake, and
measures, level by level, streams through HAProxy (both nodes) and straight to node ``a`` (one
node, the other idle), with the CPU of every node process and of HAProxy.

Environment: ``BENCH_PG`` (admin URL, default ``postgresql://postgres@127.0.0.1:5432``) and
``BENCH_DB`` (database created fresh per stack, default ``prompthub_benchrun``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

from tools.bench.loadgen import Connection, Target, fetch, request_rate, run_level

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB_NAME = os.environ.get("BENCH_DB", "prompthub_benchrun")
OPENAI_KEY = "bench-openai-key"
SYSTEM_PROMPT = "You are a concise assistant for benchmark runs. Answer in plain prose."
MESSAGE = "Summarise the plot of a short story about a lighthouse keeper in fifty words."
LEVELS = (1, 10, 50, 200)
META_TOKEN = re.compile(rb'<meta name="csrf-token" content="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load() -> float:
    return round(os.getloadavg()[0], 2)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": date.today().isoformat(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_at_start": os.getloadavg(),
    }


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class ServerConfig:
    worker_class: str = "gthread"
    workers: int = 2
    threads: int = 64
    worker_connections: int = 1000  # gevent only

    @property
    def label(self) -> str:
        if self.worker_class == "gevent":
            return f"gevent {self.workers}w"
        return f"{self.worker_class} {self.workers}w x {self.threads}t"


@dataclass
class FakeConfig:
    kind: str = "async"  # "async" (tools/bench/fake_async.py) or "wsgi" (tools/fake_provider.py)
    ttft_ms: float = 200
    tokens: int = 50
    token_delay_ms: float = 10


@dataclass
class Stack:
    """Fake provider + fresh PostgreSQL database + gunicorn, started and stopped together."""

    server: ServerConfig = field(default_factory=ServerConfig)
    fake: FakeConfig = field(default_factory=FakeConfig)
    workdir: Path = field(default_factory=lambda: Path("/tmp/prompthub-bench"))
    extra_env: dict[str, str] = field(default_factory=dict)
    fake_port: int = 0
    port: int = 0
    start_seconds: float = 0.0
    _procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    @property
    def database_url(self) -> str:
        return f"{PG_ADMIN}/{DB_NAME}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OPENROUTER_"))}
        env.update(
            APP_ENV="production",
            SECRET_KEY="bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            SESSION_COOKIE_SECURE="false",  # plain HTTP on loopback
            DATABASE_URL=self.database_url,
            OPENAI_API_KEY=OPENAI_KEY,
            OPENAI_BASE_URL=f"{self.fake_url}/v1",
            RATELIMIT_ENABLED="false",
            HOST="127.0.0.1",
            PORT=str(self.port),
            WEB_CONCURRENCY=str(self.server.workers),
            GUNICORN_THREADS=str(self.server.threads),
            UPLOAD_DIR=str(self.workdir / "uploads"),
            CHAT_TITLES="false",  # the figures are the replies' (titles are a job since #35)
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        env.update(self.extra_env)
        return env

    def start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fake_port, self.port = free_port(), free_port()
        recreate_database()
        subprocess.run(  # the deploy path: migrations, not create_all
            [str(Path(PYTHON).with_name("flask")), "db", "upgrade"],
            cwd=ROOT,
            env={**self.env(), "FLASK_APP": "app"},
            check=True,
            capture_output=True,
        )
        fake_module = (
            "tools.bench.fake_async" if self.fake.kind == "async" else "tools.fake_provider"
        )
        fake = subprocess.Popen(
            [PYTHON, "-m", fake_module, "--port", str(self.fake_port),
             "--ttft-ms", str(self.fake.ttft_ms), "--tokens", str(self.fake.tokens),
             "--token-delay-ms", str(self.fake.token_delay_ms), "--openai-key", OPENAI_KEY],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._procs.append(fake)
        assert fake.stdout is not None
        fake.stdout.readline()  # "listening on ..."
        cmd = [str(Path(PYTHON).with_name("gunicorn")), "--config", "gunicorn.conf.py",
               "--worker-class", self.server.worker_class]  # fmt: skip
        if self.server.worker_class == "gevent":
            cmd += ["--worker-connections", str(self.server.worker_connections)]
        cmd.append("tools.bench.benchapp:create_app()")
        started = time.perf_counter()
        with (self.workdir / "gunicorn.log").open("wb") as log:  # the child keeps its own copy
            self._procs.append(
                subprocess.Popen(
                    cmd, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT
                )
            )
        self.start_seconds = self._wait_ready(started)
        return self

    def _wait_ready(self, started: float) -> float:
        """Seconds from spawning gunicorn until every worker has answered."""
        deadline = started + 60
        while time.perf_counter() < deadline:
            try:
                r = httpx.get(f"{self.url}/healthz", timeout=1.0)
                if r.status_code == 200 and len(self.workers) >= self.server.workers:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"gunicorn did not start; see {self.workdir / 'gunicorn.log'}")

    @property
    def master(self) -> psutil.Process:
        return psutil.Process(self._procs[1].pid)

    @property
    def fake_process(self) -> psutil.Process:
        return psutil.Process(self._procs[0].pid)

    @property
    def workers(self) -> list[psutil.Process]:
        return self.master.children()

    def server_procs(self) -> list[psutil.Process]:
        return [self.master, *self.workers]

    def worker_rss_mb(self) -> list[float]:
        return [round(p.memory_info().rss / 2**20, 1) for p in self.workers]

    def stop(self) -> None:
        for proc in reversed(self._procs):
            proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self._procs.clear()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def recreate_database() -> None:
    with psycopg.connect(f"{PG_ADMIN}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


# --- data set-up through the API ---------------------------------------------------------------


@dataclass
class Account:
    email: str
    password: str
    token: str
    project_id: int

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_account(base: str, email: str, password: str = "bench-password-123") -> Account:
    with httpx.Client(base_url=base, trust_env=False, timeout=30) as client:
        r = client.post("/api/auth/register", json={"email": email, "password": password})
        r.raise_for_status()
        token = r.json()["token"]
        r = client.post(
            "/api/projects",
            json={"name": "Bench project", "system_prompt": SYSTEM_PROMPT},
            headers={"Authorization": f"Bearer {token}"},
        )
        r.raise_for_status()
        return Account(email, password, token, r.json()["id"])


def platform_target(stack: Stack, account: Account) -> Target:
    return Target(
        name="platform",
        url=f"{stack.url}/api/projects/{account.project_id}/chat",
        headers=account.bearer,
        body=lambda n: {"message": MESSAGE, "stream": True},
        first=b"event: delta",
        done=b"event: done",
        failed=b"event: error",
    )


def openai_target(stack: Stack, account: Account) -> Target | None:
    """The same reply asked for through the OpenAI-compatible endpoint (``/v1``) with an API key
    of the account, as an app using the official SDK sends it; None for a tree without API
    keys (a "before" run of an older commit)."""
    with httpx.Client(base_url=stack.url, trust_env=False, timeout=30) as client:
        r = client.post("/api/keys", json={"name": "bench"}, headers=account.bearer)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        key = r.json()["key"]
    body = {
        "model": "bench-project",
        "messages": [{"role": "user", "content": MESSAGE}],
        "stream": True,
    }
    return Target(
        name="openai_compat",
        url=f"{stack.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        body=lambda n: body,
        first=b'"delta":{"content":',  # the first text chunk (the role chunk comes before)
        done=b'"finish_reason":"stop"',
        failed=b'{"error":',
    )


def direct_target(stack: Stack) -> Target:
    """The request the platform sends for a new conversation (see ``OpenAIProvider.build_body``)."""
    body = {
        "model": "gpt-4o-mini",
        "instructions": SYSTEM_PROMPT,
        "input": [{"role": "user", "content": MESSAGE}],
        "max_output_tokens": 1024,
        "store": False,
        "stream": True,
        "stream_options": {"include_obfuscation": False},
    }
    return Target(
        name="direct",
        url=f"{stack.fake_url}/v1/responses",
        headers={"Authorization": f"Bearer {OPENAI_KEY}", "Accept": "text/event-stream"},
        body=lambda n: body,
        first=b"response.output_text.delta",
        done=b"response.completed",
        failed=b"event: error\n",
    )


# --- measurements ------------------------------------------------------------------------------


class RssSampler:
    """Peak RSS per worker while a level runs (sampled every 200 ms)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.peak: dict[int, float] = {}
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            for proc in self.stack.workers:
                with contextlib.suppress(psutil.Error):
                    rss = proc.memory_info().rss / 2**20
                    self.peak[proc.pid] = max(self.peak.get(proc.pid, 0.0), rss)
            await asyncio.sleep(0.2)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def measure_level(
    stack: Stack, target: Target, concurrency: int, duration: float, *, server_side: bool
) -> dict[str, Any]:
    procs = stack.server_procs() if server_side else [stack.fake_process]
    load_before = load()
    cpu0 = cpu_seconds(procs)
    fake0 = cpu_seconds([stack.fake_process])
    with RssSampler(stack) as rss:
        result = await run_level(target, concurrency, duration=duration, min_rounds=2)
    summary = result.summary()
    done = max(1, summary["completed"])
    cpu = cpu_seconds(procs) - cpu0
    summary.update(
        load_before=load_before,
        server_cpu_ms_per_reply=round(1000 * cpu / done, 2),
        server_cpu_cores=round(cpu / result.wall, 2),
        fake_cpu_ms_per_stream=round(1000 * (cpu_seconds([stack.fake_process]) - fake0) / done, 2),
    )
    if server_side:
        summary["worker_rss_mb_peak"] = [round(v, 1) for v in rss.peak.values()]
    return summary


async def streams(
    stack: Stack, levels: tuple[int, ...], duration: float, account: Account
) -> list[dict[str, Any]]:
    platform_t, direct_t = platform_target(stack, account), direct_target(stack)
    compat_t = openai_target(stack, account)
    # Warm up: first requests import lazily, open pools and connections.
    await run_level(platform_t, 4, duration=0.5, min_rounds=2)
    if compat_t is not None:
        await run_level(compat_t, 4, duration=0.5, min_rounds=2)
    rows = []
    for level in levels:
        direct = await measure_level(stack, direct_t, level, duration, server_side=False)
        plat = await measure_level(stack, platform_t, level, duration, server_side=True)
        row = {"concurrency": level, "direct": direct, "platform": plat}
        sides = [("", plat)]
        if compat_t is not None:
            compat = await measure_level(stack, compat_t, level, duration, server_side=True)
            row["openai_compat"] = compat
            sides.append(("openai_compat_", compat))
        for name, side in sides:
            if side["ttft_ms_median"] is not None and direct["ttft_ms_median"] is not None:
                row[f"{name}added_ttft_ms_median"] = round(
                    side["ttft_ms_median"] - direct["ttft_ms_median"], 1
                )
            if direct["streams_per_s"]:
                row[f"{name}throughput_ratio"] = round(
                    side["streams_per_s"] / direct["streams_per_s"], 3
                )
        print(json.dumps(row), file=sys.stderr, flush=True)  # noqa: T201
        rows.append(row)
    return rows


async def bombs(
    stack: Stack, levels: tuple[int, ...], duration: float, account: Account, count: int = 10
) -> dict[str, Any]:
    """Chat streams on a quiet server, then while ``count`` PDF bombs (tools/pdfs.py) are being
    extracted: time to first token and errors, the uploads' answers, and how many bombs were
    still pending when the measurement ended (so it really overlapped the extraction)."""
    from tools.pdfs import bomb_pdf

    target = platform_target(stack, account)
    await run_level(target, 4, duration=0.5, min_rounds=2)
    report: dict[str, Any] = {"quiet": [], "bombs": [], "uploads": []}
    for level in levels:
        report["quiet"].append(
            await measure_level(stack, target, level, duration, server_side=True)
        )

    async def upload(client: httpx.AsyncClient, i: int) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            r = await client.post(
                f"/api/projects/{account.project_id}/files",
                files={"file": (f"bomb{i}.pdf", bomb_pdf(pages=20 + i))},
            )
            outcome: Any = r.status_code
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        return {"answer": outcome, "seconds": round(time.perf_counter() - started, 2)}

    async with httpx.AsyncClient(
        base_url=stack.url, headers=account.bearer, timeout=10, trust_env=False
    ) as client:
        report["uploads"] = await asyncio.gather(*(upload(client, i) for i in range(count)))
        for level in levels:
            report["bombs"].append(
                await measure_level(stack, target, level, duration, server_side=True)
            )
        try:
            files = (await client.get(f"/api/projects/{account.project_id}/files")).json()
            statuses = [f["text"]["status"] for f in files["data"]]
            report["pending_at_end"] = statuses.count("pending")
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            report["pending_at_end"] = type(exc).__name__
    return report


def session_cookie(base: str, account: Account) -> httpx.Cookies:
    with httpx.Client(base_url=base, trust_env=False, timeout=30) as client:
        page = client.get("/login")
        token = META_TOKEN.search(page.content)
        assert token, "no csrf token on /login"
        r = client.post(
            "/login",
            data={"email": account.email, "password": account.password,
                  "csrf_token": token.group(1).decode()},
        )  # fmt: skip
        assert r.status_code in (302, 303), r.status_code
        return client.cookies


def seed_conversation(stack: Stack, project_id: int, messages: int) -> int:
    """A conversation with ``messages`` rows, written straight into the database (COPY)."""
    url = stack.database_url
    with psycopg.connect(url) as conn:
        conv_id = conn.execute(
            "INSERT INTO conversations (project_id, title, created_at, updated_at) "
            "VALUES (%s, %s, now(), now()) RETURNING id",
            (project_id, f"{messages} messages"),
        ).fetchone()[0]
        text = (
            "A reply with **some Markdown**, a list:\n\n- one\n- two\n\n"
            "and `code`, long enough to look like a real answer. " * 3
        )
        with conn.cursor().copy(
            "COPY messages (conversation_id, role, content, status, fallback, created_at) "
            "FROM STDIN"
        ) as copy:
            for i in range(messages):
                role = "user" if i % 2 == 0 else "assistant"
                copy.write_row((conv_id, role, text, "complete", False, "2026-11-25T00:00:00Z"))
        conn.execute("ANALYZE messages")
    return conv_id


async def timed_gets(base: str, path: str, headers: dict[str, str], n: int) -> dict[str, Any]:
    parts = httpx.URL(base)
    conn = Connection(parts.host, parts.port or 80)
    samples = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            status, _ = await fetch(conn, "GET", path, headers)
            samples.append(time.perf_counter() - t0)
            assert status == 200, (path, status)
    finally:
        await conn.close()
    samples.sort()
    return {
        "path": path,
        "n": n,
        "ms_median": round(1000 * samples[len(samples) // 2], 2),
        "ms_p95": round(1000 * samples[int(len(samples) * 0.95) - 1], 2),
    }


async def endpoints(stack: Stack, account: Account, duration: float) -> dict[str, Any]:
    out: dict[str, Any] = {"worker_rss_mb_idle": stack.worker_rss_mb()}
    # Requests per second: the bearer-authenticated list vs the bare route, same server.
    for conc in (1, 16):
        bare = await request_rate(
            f"{stack.url}/bench/bare", {}, concurrency=conc, duration=duration
        )
        cpu0 = cpu_seconds(stack.server_procs())
        api = await request_rate(
            f"{stack.url}/api/projects", account.bearer, concurrency=conc, duration=duration
        )
        api["server_cpu_ms_per_request"] = round(
            1000 * (cpu_seconds(stack.server_procs()) - cpu0) / max(1, api["requests"]), 3
        )
        out[f"rps_c{conc}"] = {"load_before": load(), "bare": bare, "api_projects": api}
    # History endpoints on a long vs a short conversation.
    cookies = session_cookie(stack.url, account)
    cookie_header = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    convs = {n: seed_conversation(stack, account.project_id, n) for n in (10, 30, 5000)}
    history: dict[str, Any] = {"load_before": load()}
    api, page = "/api/conversations/{}/messages", f"/projects/{account.project_id}?c={{}}"
    checks = {
        # As the issue words it: a 10-message conversation returns all 10 rows, the long one
        # a full page (50 for the API, 30 on the page), so these also compare page sizes.
        "messages_api": (api, "", 10),
        "messages_api_html": (api, "?html=1", 10),
        "chat_page": (page, "", 10),
        # Same rows returned, only the conversation's length differs.
        "messages_api_limit10": (api, "?limit=10", 10),
        "messages_api_html_limit10": (api, "?html=1&limit=10", 10),
        "chat_page_30_rows": (page, "", 30),
    }
    for key, (template, query, short) in checks.items():
        headers = cookie_header if template is page else account.bearer
        sep = "&" if "?" in template and query else ""
        short_path = template.format(convs[short]) + (sep + query.lstrip("?") if sep else query)
        long_path = template.format(convs[5000]) + (sep + query.lstrip("?") if sep else query)
        history[key] = {
            "short_messages": short,
            "short": await timed_gets(stack.url, short_path, headers, 60),
            "5000": await timed_gets(stack.url, long_path, headers, 60),
        }
        history[key]["ratio"] = round(
            history[key]["5000"]["ms_median"] / history[key]["short"]["ms_median"], 2
        )
    out["history"] = history
    out["worker_rss_mb_after"] = stack.worker_rss_mb()
    return out


def app_start_seconds() -> dict[str, float]:
    """Import + create_app in a fresh interpreter (what each gunicorn worker pays on boot)."""
    code = (
        "import time; t = time.perf_counter(); from app import create_app; "
        "create_app({'SECRET_KEY': 'x' * 40}); print(time.perf_counter() - t)"
    )
    runs = []
    for _ in range(3):
        result = subprocess.run(
            [PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        runs.append(float(result.stdout.strip().splitlines()[-1]))
    return {"create_app_s_min": round(min(runs), 3), "create_app_s_max": round(max(runs), 3)}


async def fake_capacity(levels: tuple[int, ...], duration: float) -> dict[str, Any]:
    """The fake provider alone, both servers, so it is never the bottleneck unnoticed."""
    out = {}
    for kind in ("wsgi", "async"):
        stack = Stack(fake=FakeConfig(kind=kind))
        stack.fake_port = free_port()
        fake = subprocess.Popen(
            [PYTHON, "-m", "tools.bench.fake_async" if kind == "async" else "tools.fake_provider",
             "--port", str(stack.fake_port), "--openai-key", OPENAI_KEY],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        stack._procs.append(fake)
        try:
            assert fake.stdout is not None
            fake.stdout.readline()
            rows = []
            for level in levels:
                proc = psutil.Process(fake.pid)
                load_before = load()
                cpu0 = cpu_seconds([proc])
                result = await run_level(direct_target(stack), level, duration=duration)
                summary = result.summary()
                cpu = cpu_seconds([proc]) - cpu0
                summary.update(
                    load_before=load_before,
                    fake_cpu_ms_per_stream=round(1000 * cpu / max(1, summary["completed"]), 2),
                    fake_cpu_cores=round(cpu / result.wall, 2),
                    fake_rss_mb=round(proc.memory_info().rss / 2**20, 1),
                )
                print(json.dumps({"fake": kind, **summary}), file=sys.stderr, flush=True)  # noqa: T201
                rows.append(summary)
            out[kind] = rows
        finally:
            fake.terminate()
            fake.wait()
            assert fake.stdout is not None
            fake.stdout.close()
    return out


def profile(
    stack: Stack, account: Account, concurrency: int, duration: float, out: Path | None
) -> dict[str, Any]:
    """py-spy samples every gunicorn process while ``concurrency`` platform streams run; writes
    ``<out>.pyspy.txt`` (collapsed stacks) and returns the summary of the level."""
    raw = (out or stack.workdir / "profile.json").with_suffix(".pyspy.txt")
    spy = subprocess.Popen(
        [str(Path(PYTHON).with_name("py-spy")), "record", "--pid", str(stack.master.pid),
         "--subprocesses", "--gil", "--format", "raw", "--rate", "250", "--output", str(raw),
         "--duration", str(int(duration))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    asyncio.run(run_level(platform_target(stack, account), 4, duration=0.5))  # warm up
    result = asyncio.run(
        run_level(platform_target(stack, account), concurrency, duration=duration - 2)
    )
    spy.wait(timeout=duration + 30)
    return {"level": result.summary(), "stacks": str(raw)}


# --- two nodes behind HAProxy vs one node ------------------------------------------------------


def start_fake(fake: FakeConfig, port: int) -> subprocess.Popen:
    module = "tools.bench.fake_async" if fake.kind == "async" else "tools.fake_provider"
    proc = subprocess.Popen(
        [PYTHON, "-m", module, "--port", str(port), "--ttft-ms", str(fake.ttft_ms),
         "--tokens", str(fake.tokens), "--token-delay-ms", str(fake.token_delay_ms),
         "--openai-key", OPENAI_KEY],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()  # "listening on ..."
    return proc


def chat_target(name: str, base: str, account: Account) -> Target:
    return Target(
        name=name,
        url=f"{base}/api/projects/{account.project_id}/chat",
        headers=account.bearer,
        body=lambda n: {"message": MESSAGE, "stream": True},
        first=b"event: delta",
        done=b"event: done",
        failed=b"event: error",
    )


async def cluster_levels(
    procs: dict[str, list[psutil.Process]],
    targets: dict[str, Target],
    levels: tuple[int, ...],
    duration: float,
) -> list[dict[str, Any]]:
    """Each level: every target in turn, with the CPU of each group of processes."""
    for target in targets.values():  # warm up: lazy imports, pools, connections
        await run_level(target, 4, duration=0.5, min_rounds=2)
    rows = []
    for level in levels:
        row: dict[str, Any] = {"concurrency": level}
        for key, target in targets.items():
            load_before = load()
            cpu0 = {name: cpu_seconds(group) for name, group in procs.items()}
            result = await run_level(target, level, duration=duration, min_rounds=2)
            summary = result.summary()
            done = max(1, summary["completed"])
            summary["load_before"] = load_before
            for name, group in procs.items():
                used = cpu_seconds(group) - cpu0[name]
                summary[f"{name}_cpu_ms_per_reply"] = round(1000 * used / done, 2)
            row[key] = summary
        if row["one_node_direct"]["streams_per_s"]:
            row["ratio"] = round(
                row["two_nodes_haproxy"]["streams_per_s"] / row["one_node_direct"]["streams_per_s"],
                3,
            )
        print(json.dumps(row), file=sys.stderr, flush=True)  # noqa: T201
        rows.append(row)
    return rows


def cluster_bench(
    levels: tuple[int, ...], duration: float, workers: int, fake: FakeConfig, extra: dict
) -> dict[str, Any]:
    from tools.cluster import Cluster

    fake_port = free_port()
    fake_proc = start_fake(fake, fake_port)
    workdir = Path(tempfile.mkdtemp(prefix="prompthub-bench-cluster-"))
    workdir.chmod(0o755)  # the private PostgreSQL's data is in here (postgres user)
    settings = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OPENROUTER_"))}
    settings.pop("DATABASE_URL", None)
    settings.pop("REDIS_URL", None)
    settings.update(
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=f"http://127.0.0.1:{fake_port}/v1",
        RATELIMIT_ENABLED="false",
        CHAT_TITLES="false",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        **extra,
    )
    cluster = Cluster(workdir, workers=workers, settings=settings)
    try:
        cluster.start()
        account = make_account(cluster.url, "bench@example.com")
        nodes = {name: psutil.Process(node.proc.pid) for name, node in cluster.nodes.items()}
        assert cluster.haproxy_pid is not None
        procs = {
            "nodes": [p for master in nodes.values() for p in (master, *master.children())],
            "node_a": [nodes["a"], *nodes["a"].children()],
            "haproxy": [psutil.Process(cluster.haproxy_pid)],
        }
        targets = {
            "one_node_direct": chat_target("node a", cluster.nodes["a"].url, account),
            "two_nodes_haproxy": chat_target("haproxy", cluster.url, account),
        }
        rows = asyncio.run(cluster_levels(procs, targets, levels, duration))
        return {"workers_per_node": workers, "levels": rows}
    finally:
        cluster.stop()
        fake_proc.terminate()
        fake_proc.wait()
        assert fake_proc.stdout is not None
        fake_proc.stdout.close()
        shutil.rmtree(workdir, ignore_errors=True)


# --- command line ------------------------------------------------------------------------------


def emit(report: dict[str, Any], out: Path | None) -> dict[str, Any]:
    """Finish a report (the load at its end), print it as JSON and write it to ``out``."""
    report["load_at_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)  # noqa: T201
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what", choices=["fake", "streams", "endpoints", "profile", "bombs", "cluster"]
    )
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per level")
    parser.add_argument("--fake", default="async", choices=["async", "wsgi"])
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for gunicorn (repeatable)"
    )
    args = parser.parse_args(argv)
    levels = tuple(int(x) for x in args.levels.split(","))
    report: dict[str, Any] = {"machine": machine(), "what": args.what}
    if args.what == "fake":
        report["fake"] = asyncio.run(fake_capacity(levels, args.duration))
    elif args.what == "cluster":
        extra = dict(item.split("=", 1) for item in args.env)
        report["env"] = extra
        report["cluster"] = cluster_bench(
            levels, args.duration, args.workers, FakeConfig(kind=args.fake), extra
        )
    else:
        server = ServerConfig(args.worker_class, args.workers, args.threads)
        report["server"] = asdict(server) | {"label": server.label}
        extra = dict(item.split("=", 1) for item in args.env)
        report["env"] = extra
        with Stack(server=server, fake=FakeConfig(kind=args.fake), extra_env=extra) as stack:
            report["gunicorn_ready_s"] = round(stack.start_seconds, 3)
            report["worker_rss_mb_idle"] = stack.worker_rss_mb()
            account = make_account(stack.url, "bench@example.com")
            if args.what == "streams":
                report["streams"] = asyncio.run(streams(stack, levels, args.duration, account))
            elif args.what == "bombs":
                report["bombs"] = asyncio.run(bombs(stack, levels, args.duration, account))
            elif args.what == "profile":
                report["profile"] = profile(stack, account, levels[0], args.duration, args.out)
            else:
                report["endpoints"] = asyncio.run(endpoints(stack, account, args.duration))
                report["app_start"] = app_start_seconds()
            report["worker_rss_mb_end"] = stack.worker_rss_mb()
    return emit(report, args.out)


if __name__ == "__main__":
    main()
