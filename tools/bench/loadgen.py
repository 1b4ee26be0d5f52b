"""Closed-loop streaming load generator (asyncio), shared by the benchmarks.

``concurrency`` workers each open one stream after another until ``duration`` has passed (and
at least ``min_rounds`` each), so at any moment about ``concurrency`` streams are open. A stream
is read as raw bytes over a minimal asyncio HTTP/1.1 connection and only scanned for two markers
(first token, terminal event): no SSE or JSON parsing on the client, so the generator stays cheap
next to the server it measures. Its own CPU time is reported so a run can show it was not the
bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Target:
    """One way of asking for a streamed reply: the platform's chat API or the provider itself."""

    name: str
    url: str
    headers: dict[str, str]
    body: Callable[[int], dict[str, Any]]  # request number → JSON body
    first: bytes  # marks the first token (the platform's first ``delta`` event)
    done: bytes  # marks a successful end
    failed: bytes = b"event: error"

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Sample:
    ok: bool
    status: int | None
    ttft: float | None  # seconds from sending to the first token
    total: float  # seconds from sending to the end of the body
    error: str | None = None
    tail: bytes = b""  # the last bytes of the body (the terminal event), for acknowledgements


@dataclass
class LevelResult:
    target: str
    concurrency: int
    wall: float
    samples: list[Sample] = field(default_factory=list)
    client_cpu: float = 0.0

    @property
    def completed(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]

    @property
    def errors(self) -> int:
        return sum(not s.ok for s in self.samples)

    def summary(self) -> dict[str, Any]:
        done = self.completed
        ttfts = sorted(s.ttft for s in done if s.ttft is not None)
        totals = sorted(s.total for s in done)
        kinds: dict[str, int] = {}
        for s in self.samples:
            if not s.ok:
                key = s.error or f"HTTP {s.status}"
                kinds[key] = kinds.get(key, 0) + 1
        return {
            "target": self.target,
            "concurrency": self.concurrency,
            "streams": len(self.samples),
            "completed": len(done),
            "errors": self.errors,
            "error_kinds": kinds,
            "wall_s": round(self.wall, 3),
            "streams_per_s": round(len(done) / self.wall, 2) if self.wall else 0.0,
            "ttft_ms_median": ms(percentile(ttfts, 50)),
            "ttft_ms_p95": ms(percentile(ttfts, 95)),
            "total_ms_median": ms(percentile(totals, 50)),
            "total_ms_p95": ms(percentile(totals, 95)),
            "client_cpu_ms_per_stream": round(
                1000 * self.client_cpu / max(1, len(self.samples)), 3
            ),
        }


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


class Connection:
    """A minimal HTTP/1.1 keep-alive client connection on asyncio streams, for the measured
    streams only (setup calls use httpx). httpx costs ~3.8 ms of client CPU per 50-token stream
    and httpcore's pool scans every connection per request; this costs a fraction of that, and
    on 2 cores every client cycle is taken from the server being measured."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b""):
        """Send a request; yield the status, then the body's pieces as they arrive."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        reader = self.reader
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        fields = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip().lower()
        yield status
        if fields.get("transfer-encoding") == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                yield (await reader.readexactly(size + 2))[:-2]
        elif "content-length" in fields:
            yield await reader.readexactly(int(fields["content-length"]))
        else:
            yield await reader.read()
            fields["connection"] = "close"
        if fields.get("connection") == "close":
            await self.close()


async def one_stream(conn: Connection, target: Target, number: int) -> Sample:
    start = time.perf_counter()
    ttft = None
    keep = max(len(target.first), len(target.done), len(target.failed))
    window = b""
    tail = b""
    status = None
    body = json.dumps(target.body(number)).encode()
    try:
        pieces = conn.request("POST", target.path, target.headers, body)
        status = await anext(pieces)
        async for piece in pieces:
            if ttft is None:
                window = window[-keep:] + piece
                if target.first in window:
                    ttft = time.perf_counter() - start
            tail = (tail + piece)[-4096:]
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        await conn.close()
        return Sample(False, status, ttft, time.perf_counter() - start, type(exc).__name__)
    total = time.perf_counter() - start
    if status != 200:
        return Sample(False, status, None, total, f"HTTP {status}", tail)
    if target.failed in tail:
        return Sample(False, status, ttft, total, "error event", tail)
    if target.done not in tail:
        return Sample(False, status, ttft, total, "no terminal event", tail)
    return Sample(True, status, ttft, total, None, tail)


async def run_level(
    target: Target,
    concurrency: int,
    *,
    duration: float,
    min_rounds: int = 1,
) -> LevelResult:
    result = LevelResult(target.name, concurrency, 0.0)
    counter = iter(range(10**9))
    host, port = target.address
    clients = [Connection(host, port) for _ in range(concurrency)]
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + duration

    async def worker(client: Connection) -> None:
        rounds = 0
        while rounds < min_rounds or time.perf_counter() < deadline:
            result.samples.append(await one_stream(client, target, next(counter)))
            rounds += 1

    try:
        await asyncio.gather(*(worker(c) for c in clients))
    finally:
        result.wall = time.perf_counter() - start
        result.client_cpu = time.process_time() - cpu0
        for client in clients:
            await client.close()
    return result


async def fetch(
    conn: Connection, method: str, path: str, headers: dict[str, str]
) -> tuple[int, bytes]:
    """One whole request on a raw connection: ``(status, body)``."""
    pieces = conn.request(method, path, headers)
    status = await anext(pieces)
    return status, b"".join([piece async for piece in pieces])


async def request_rate(
    url: str, headers: dict[str, str], *, concurrency: int, duration: float
) -> dict[str, Any]:
    """Closed-loop GETs on keep-alive connections: requests/s, latency, non-200 count."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    conns = [
        Connection(parts.hostname or "127.0.0.1", parts.port or 80) for _ in range(concurrency)
    ]
    latencies: list[float] = []
    failures = 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + duration

    async def worker(conn: Connection) -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                status, _ = await fetch(conn, "GET", path, headers)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                await conn.close()
                status = 0
            latencies.append(time.perf_counter() - t0)
            failures += status != 200

    await asyncio.gather(*(worker(c) for c in conns))
    wall = time.perf_counter() - start
    client_cpu = time.process_time() - cpu0
    for conn in conns:
        await conn.close()
    latencies.sort()
    return {
        "requests": len(latencies),
        "non_200": failures,
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 1),
        "latency_ms_median": ms(percentile(latencies, 50)),
        "latency_ms_p95": ms(percentile(latencies, 95)),
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(1, len(latencies)), 3),
    }
