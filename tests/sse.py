"""Server-sent events in tests: parse a body into (event, data) pairs (comments kept apart), read
a streamed test-client response until a condition, and find the turn id of a chat stream."""

from __future__ import annotations

import json


def parse_sse(body: str) -> tuple[list[tuple[str, dict]], list[str]]:
    events, comments = [], []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line[1:].strip())
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events, comments


def read_stream(resp, until=None, on_chunk=None) -> str:
    """Read a streamed Flask test-client response (``buffered=False``) until ``until(received)``
    is true or the body ends, then close it (what a client that leaves does); ``on_chunk``
    sees the text received so far after each chunk."""
    received = ""
    for chunk in resp.response:
        received += chunk.decode() if isinstance(chunk, bytes) else chunk
        if on_chunk is not None:
            on_chunk(received)
        if until is not None and until(received):
            break
    resp.close()
    return received


def turn_id_of(received: str) -> int:
    """The ``turn_id`` of the ``start`` event in a chat stream's text."""
    return json.loads(received.split("event: start\ndata: ")[1].split("\n")[0])["turn_id"]
