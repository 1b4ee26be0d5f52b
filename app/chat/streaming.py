"""Server-sent events for chat: the one place where chat events become bytes on the wire.

Events (``turns``): ``start`` (the turn id, the conversation and the stored user message),
``delta`` (text), ``snapshot`` (the text so far, replacing what the reader has: a reader served
from the database), ``done`` (the assistant message with its rendered HTML) or ``error`` (code,
the reason, the partial reply). Events from the broker carry an ``id:``, which a reader sends
back as ``Last-Event-ID`` to resume. Both terminal events carry ``stored``: false when the
database was unreachable as the reply ended, so it waits in the server's spool and is written when
the database is back. Comment lines (``: keep-alive``) are heartbeats. The page and the JSON API
both return ``sse_response``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing

from flask import Response, stream_with_context

from app.chat.broker import Entry


def render(entries: Iterator[Entry | None]) -> Iterator[str]:
    # Closed explicitly when the client goes: the turn's own reader hands the turn on then.
    with closing(entries):
        for entry in entries:
            if entry is None:
                yield ": keep-alive\n\n"
                continue
            payload = json.dumps(entry.data, ensure_ascii=False, separators=(",", ":"))
            head = f"id: {entry.id}\n" if entry.id else ""
            yield f"{head}event: {entry.event}\ndata: {payload}\n\n"


def sse_response(entries: Iterator[Entry | None]) -> Response:
    response = Response(stream_with_context(render(entries)), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
