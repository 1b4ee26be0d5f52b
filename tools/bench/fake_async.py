"""Bench-only fake OpenAI Responses server on raw asyncio: one event loop instead of one thread
per connection, so it holds hundreds of concurrent streams on a fraction of a core.

Measured first (docs/benchmarks.md): the threaded Werkzeug fake (``tools/fake_provider.py``)
saturates one core near 125 streams/s and stretches a 200 ms time-to-first-token to ~590 ms at
200 concurrent streams, so it would be the bottleneck of any 200-stream comparison.

It speaks the same wire format because it runs the same code: ``POST /v1/responses`` runs the
reply generators (``OpenAIReply.events``, ``.response_body``), which yield bytes and ``Pause``;
here a pause is an ``await asyncio.sleep`` and the bytes produced between two pauses go out as
one chunk. Every other route (Files, OpenRouter, ``/_control``) is handed to the threaded fake's
own WSGI app, called inline (those answers never sleep unless scripted to). HTTP/1.1 keep-alive;
the default scenario comes from the command line.

    python -m tools.bench.fake_async --port 8765 --ttft-ms 200 --tokens 50 --token-delay-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

from werkzeug.test import EnvironBuilder

from tools.fake_provider import (
    DEFAULT_OPENAI_KEY,
    FakeProviderServer,
    OpenAIReply,
    Pause,
    bench_scenario,
    new_id,
    openai_auth_error,
    validate_openai,
)

STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


class AsyncFake:
    def __init__(self, fake: FakeProviderServer) -> None:
        self.fake = fake  # holds the scenario, text and key; never started
        self.streams = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self.one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # shutting down with streams open
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        raw = await reader.readexactly(length) if length else b""
        keep_alive = headers.get("connection", "").lower() != "close"
        if method != "POST" or path.rstrip("/") != "/v1/responses":
            await self.send_wsgi(writer, method, path, headers, raw)
            return keep_alive
        denied = openai_auth_error(headers.get("authorization", ""), self.fake.openai_key)
        if denied is not None:
            await self.send_json(writer, 401, denied)
            return keep_alive
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        invalid = validate_openai(body)
        if invalid:
            await self.send_json(writer, 400, {"error": {"message": invalid, "code": None}})
            return keep_alive
        reply = OpenAIReply(self.fake, self.fake.default, body)
        if not body.get("stream"):
            await asyncio.sleep(self.fake.default.ttft_ms / 1000)
            await self.send_json(writer, 200, reply.response_body())
            return keep_alive
        await self.stream(writer, reply.events(None))
        return keep_alive

    async def stream(self, writer: asyncio.StreamWriter, events) -> None:
        self.streams += 1
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            f"Cache-Control: no-cache\r\nx-request-id: {new_id('req_', 32)}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        pending: list[bytes] = []
        sent_head = False
        for item in events:
            if isinstance(item, Pause):
                if pending:
                    data = b"".join(pending)
                    pending.clear()
                    writer.write((b"" if sent_head else head) + chunk(data))
                    sent_head = True
                    await writer.drain()
                await asyncio.sleep(item.seconds)
            else:
                pending.append(item)
        data = b"".join(pending)
        writer.write((b"" if sent_head else head) + (chunk(data) if data else b"") + b"0\r\n\r\n")
        await writer.drain()

    async def send_wsgi(
        self, writer: asyncio.StreamWriter, method: str, path: str, headers: dict, raw: bytes
    ) -> None:
        """Answer through the threaded fake's WSGI app (Files, OpenRouter, control routes)."""
        target, _, query = path.partition("?")
        environ = EnvironBuilder(
            path=target, query_string=query, method=method, headers=headers, data=raw
        ).get_environ()
        captured: dict = {}

        def start_response(status, response_headers, exc_info=None):
            captured.update(status=status, headers=response_headers)

        body = b"".join(self.fake(environ, start_response))
        head = f"HTTP/1.1 {captured['status']}\r\n" + "".join(
            f"{k}: {v}\r\n"
            for k, v in captured["headers"]
            if k.lower() not in ("content-length", "transfer-encoding", "connection")
        )
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()

    async def send_json(self, writer: asyncio.StreamWriter, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        writer.write(
            f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        await writer.drain()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def serve(host: str, port: int, fake: FakeProviderServer) -> None:
    app = AsyncFake(fake)
    server = await asyncio.start_server(app.handle, host, port, backlog=2048)
    bound = server.sockets[0].getsockname()[1]
    print(f"fake provider (asyncio) listening on http://{host}:{bound}", flush=True)  # noqa: T201
    print(f"  OPENAI_BASE_URL=http://{host}:{bound}/v1", flush=True)  # noqa: T201
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bench-only asyncio fake of OpenAI Responses.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--ttft-ms", type=float, default=200)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--token-delay-ms", type=float, default=10)
    parser.add_argument("--openai-key", default=DEFAULT_OPENAI_KEY)
    args = parser.parse_args(argv)
    fake = FakeProviderServer(
        openai_key=args.openai_key,
        default=bench_scenario(args.tokens, args.ttft_ms, args.token_delay_ms),
    )
    asyncio.run(serve(args.host, args.port, fake))


if __name__ == "__main__":
    main()
