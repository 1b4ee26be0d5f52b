"""Load test: concurrent users doing a mixed workload against gunicorn + PostgreSQL (+ Redis),
then a check that the database holds exactly what the clients were told was stored.

    python -m tools.bench.loadtest --users 50 --duration 60

Each user logs in (bcrypt at the production cost, once per user, starts spread over the first
seconds), then loops with a short think time: list projects; a streamed chat turn continuing its
own conversation (most iterations); the conversation's messages now and then; an upload of a
small text file (``POST /api/projects/<id>/files``, multipart field ``file``) now and then.

Rate limits stay on, stored in Redis (``--redis``, default db 14) as in production, with every
limit raised far above what 50 users from one address send.

Acknowledgements are counted on the client: a chat stream's ``start`` event acknowledges the
user's message (its id), its ``done`` or ``error`` event the assistant's row (its id); a 200/201
upload acknowledges a file. Afterwards the ``messages`` and ``files`` tables must hold exactly
those ids: nothing lost, nothing extra. Any 5xx or transport error fails the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from tools.bench.harness import (
    FakeConfig,
    ServerConfig,
    Stack,
    cpu_seconds,
    load,
    machine,
)

PASSWORD = "load-test-password-1"


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)  # "GET /api/projects 200": n
    transport_errors: Counter = field(default_factory=Counter)
    user_messages: set[int] = field(default_factory=set)
    assistant_messages: set[int] = field(default_factory=set)
    assistant_status: Counter = field(default_factory=Counter)
    files: set[int] = field(default_factory=set)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    ttft: list[float] = field(default_factory=list)

    def record(self, name: str, status: int, seconds: float) -> None:
        self.statuses[f"{name} {status}"] += 1
        self.latencies.setdefault(name, []).append(seconds)

    @property
    def server_errors(self) -> int:
        return sum(n for key, n in self.statuses.items() if key.rsplit(" ", 1)[1].startswith("5"))


def parse_events(body: str) -> list[tuple[str, dict]]:
    events = []
    for block in body.split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


class User:
    def __init__(self, base: str, number: int, tally: Tally, uploads: bool) -> None:
        self.base, self.number, self.tally, self.uploads = base, number, tally, uploads
        self.email = f"load{number}@example.com"
        self.client = httpx.AsyncClient(base_url=base, trust_env=False, timeout=60)
        self.headers: dict[str, str] = {}
        self.project_id: int | None = None
        self.conversation_id: int | None = None
        self.rng = random.Random(number)

    async def call(self, name: str, method: str, url: str, **kw: Any) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            response = await self.client.request(method, url, headers=self.headers, **kw)
        except httpx.HTTPError as exc:
            self.tally.transport_errors[f"{name} {type(exc).__name__}"] += 1
            return None
        self.tally.record(name, response.status_code, time.perf_counter() - t0)
        return response

    async def login(self) -> None:
        self.headers = {}
        r = await self.call(
            "POST /api/auth/login",
            "POST",
            "/api/auth/login",
            json={"email": self.email, "password": PASSWORD},
        )
        if r is not None and r.status_code == 200:
            self.headers = {"Authorization": f"Bearer {r.json()['token']}"}

    async def list_projects(self) -> None:
        r = await self.call("GET /api/projects", "GET", "/api/projects")
        if r is not None and r.status_code == 200 and self.project_id is None:
            self.project_id = r.json()["data"][0]["id"]

    async def chat(self) -> None:
        body: dict[str, Any] = {"message": f"Question {self.rng.random():.6f}", "stream": True}
        if self.conversation_id is not None:
            body["conversation_id"] = self.conversation_id
        name = "POST /api/projects/<id>/chat (stream)"
        t0 = time.perf_counter()
        ttft = None
        chunks: list[str] = []
        try:
            async with self.client.stream(
                "POST", f"/api/projects/{self.project_id}/chat", json=body, headers=self.headers
            ) as response:
                status = response.status_code
                async for text in response.aiter_text():
                    if ttft is None and "event: delta" in text:
                        ttft = time.perf_counter() - t0
                    chunks.append(text)
        except httpx.HTTPError as exc:
            self.tally.transport_errors[f"{name} {type(exc).__name__}"] += 1
            # What arrived before the error still counts: the server stored those rows.
            status = None
        if status is not None:
            self.tally.record(name, status, time.perf_counter() - t0)
        if ttft is not None:
            self.tally.ttft.append(ttft)
        for event, data in parse_events("".join(chunks)):
            if event == "start":
                self.conversation_id = data["conversation"]["id"]
                self.tally.user_messages.add(data["user_message"]["id"])
            elif event in ("done", "error"):
                self.tally.assistant_messages.add(data["message"]["id"])
                self.tally.assistant_status[data["message"]["status"]] += 1

    async def read_messages(self) -> None:
        if self.conversation_id is not None:
            await self.call(
                "GET /api/conversations/<id>/messages",
                "GET",
                f"/api/conversations/{self.conversation_id}/messages",
            )

    async def upload(self) -> None:
        content = f"Notes of user {self.number}, {self.rng.random():.9f}\n".encode() * 20
        files = {"file": (f"notes-{self.number}-{self.rng.randrange(10**9)}.txt", content)}
        r = await self.call(
            "POST /api/projects/<id>/files",
            "POST",
            f"/api/projects/{self.project_id}/files",
            files=files,
        )
        if r is not None and r.status_code in (200, 201):
            self.tally.files.add(r.json()["id"])

    async def run(self, deadline: float, start_delay: float) -> None:
        async with self.client:
            await asyncio.sleep(start_delay)
            await self.login()
            if not self.headers:
                return
            await self.list_projects()
            while time.perf_counter() < deadline:
                roll = self.rng.random()
                if roll < 0.6:
                    await self.chat()
                elif roll < 0.75:
                    await self.list_projects()
                elif roll < 0.9 or not self.uploads:
                    await self.read_messages()
                else:
                    await self.upload()
                await asyncio.sleep(self.rng.uniform(0.05, 0.3))


def create_users(base: str, count: int) -> None:
    """Accounts and one project each, before the clock starts (registration hashes with bcrypt
    at the production cost, which would otherwise dominate the first seconds)."""
    with httpx.Client(base_url=base, trust_env=False, timeout=60) as client:
        for n in range(count):
            r = client.post(
                "/api/auth/register", json={"email": f"load{n}@example.com", "password": PASSWORD}
            )
            r.raise_for_status()
            token = r.json()["token"]
            client.post(
                "/api/projects",
                json={"name": f"Load {n}", "system_prompt": "You answer load tests."},
                headers={"Authorization": f"Bearer {token}"},
            ).raise_for_status()


def probe_uploads(base: str) -> bool:
    """Whether this version of the app has ``POST /api/projects/<id>/files`` (a 401 without a
    token means the route exists; 404/405 means it does not)."""
    r = httpx.post(f"{base}/api/projects/1/files", trust_env=False, timeout=10)
    return r.status_code not in (404, 405)


def database_rows(url: str) -> dict[str, set[int]]:
    with psycopg.connect(url) as conn:
        rows = {
            "user": {r[0] for r in conn.execute("SELECT id FROM messages WHERE role = 'user'")},
            "assistant": {
                r[0] for r in conn.execute("SELECT id FROM messages WHERE role = 'assistant'")
            },
        }
        has_files = conn.execute("SELECT to_regclass('files') IS NOT NULL").fetchone()[0]
        rows["files"] = {r[0] for r in conn.execute("SELECT id FROM files")} if has_files else set()
    return rows


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1)


async def drive(base: str, users: int, duration: float, uploads: bool, tally: Tally) -> float:
    start = time.perf_counter()
    deadline = start + duration
    crowd = [User(base, n, tally, uploads) for n in range(users)]
    await asyncio.gather(
        *(u.run(deadline, start_delay=5.0 * n / users) for n, u in enumerate(crowd))
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--worker-class", default="gevent")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    env = {
        # Limits on, counted in Redis as in production, but raised: 50 users from one address
        # are not a brute-force attack.
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": args.redis,
        "RATELIMIT_KEY_PREFIX": f"loadtest-{int(time.time())}",
        "RATELIMIT_LOGIN": "10000 per minute",
        "RATELIMIT_LOGIN_ACCOUNT": "10000 per minute",
        "RATELIMIT_REGISTER": "10000 per hour",
        "RATELIMIT_CHAT": "10000 per minute",
        "RATELIMIT_UPLOAD": "10000 per minute",
        "UPLOAD_DIR": "/tmp/prompthub-bench/uploads",
    }
    server = ServerConfig(args.worker_class, args.workers, args.threads)
    report: dict[str, Any] = {"machine": machine(), "server": server.label, "users": args.users}
    report["rate_limits"] = {k: v for k, v in env.items() if k.startswith("RATELIMIT")}
    with Stack(server=server, fake=FakeConfig(), extra_env=env) as stack:
        create_users(stack.url, args.users)
        uploads = probe_uploads(stack.url)
        tally = Tally()
        report["load_before"] = load()
        cpu0 = cpu_seconds(stack.server_procs())
        wall = asyncio.run(drive(stack.url, args.users, args.duration, uploads, tally))
        report["server_cpu_cores"] = round((cpu_seconds(stack.server_procs()) - cpu0) / wall, 2)
        report["worker_rss_mb_end"] = stack.worker_rss_mb()
        time.sleep(1.0)  # any row still being written after a client gave up
        rows = database_rows(stack.database_url)
    report.update(
        wall_s=round(wall, 1),
        uploads_tested=uploads,
        requests=dict(sorted(tally.statuses.items())),
        transport_errors=dict(tally.transport_errors),
        server_errors_5xx=tally.server_errors,
        chat_ttft_ms={"median": pct(tally.ttft, 0.5), "p95": pct(tally.ttft, 0.95)},
        latency_ms={
            name: {"n": len(v), "median": pct(v, 0.5), "p95": pct(v, 0.95)}
            for name, v in sorted(tally.latencies.items())
        },
        assistant_status=dict(tally.assistant_status),
        acknowledged={
            "user_messages": len(tally.user_messages),
            "assistant_messages": len(tally.assistant_messages),
            "files": len(tally.files),
        },
        stored={k: len(v) for k, v in rows.items()},
        lost={
            "user_messages": len(tally.user_messages - rows["user"]),
            "assistant_messages": len(tally.assistant_messages - rows["assistant"]),
            "files": len(tally.files - rows["files"]),
        },
        unacknowledged_rows={
            "user_messages": len(rows["user"] - tally.user_messages),
            "assistant_messages": len(rows["assistant"] - tally.assistant_messages),
            "files": len(rows["files"] - tally.files),
        },
        load_at_end=os.getloadavg(),
    )
    report["ok"] = (
        report["server_errors_5xx"] == 0
        and not tally.transport_errors
        and not any(report["lost"].values())
        and not any(report["unacknowledged_rows"].values())
    )
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text)  # noqa: T201
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
