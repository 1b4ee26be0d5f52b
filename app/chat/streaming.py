"""Server-sent events for chat: the one place where chat events (``providers/events.py``)
become bytes on the wire.

``encode`` gives each event its SSE name and data: ``Started`` is ``start`` (the turn id, the
conversation and the stored user message), ``Text`` is ``delta`` (text), ``Snapshot`` is
``snapshot`` (the text so far, replacing what the reader has: a reader served from the
database), ``Done`` is ``done`` (the assistant message with its rendered HTML) and ``Failed`` is
``error`` (code, the reason, the partial reply). Both terminal events carry ``stored``: false
when the database was unreachable as the reply ended, so it waits in the server's spool and is
written when the database is back. ``Committed`` is not sent.

The broker (``broker.py``) holds events encoded (an ``Entry``: the name and data, and an id), so
the reply's HTML is rendered once, by the process generating the turn, and a reader in another
process gets the same entry from Redis. Entries from the broker carry an ``id:``, which a reader
sends back as ``Last-Event-ID`` to resume. ``render`` writes entries; ``None`` (a
``Heartbeat``) is a comment line (``: keep-alive``). The page and the JSON API both return
``sse_response``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from typing import Any

from flask import Response, stream_with_context

from app.chat.broker import Entry
from app.chat.schemas import (
    ChatStreamDone,
    ChatStreamError,
    ChatStreamFailure,
    ChatStreamStart,
    Conversation,
    Message,
)
from app.providers.events import Done, Event, Failed, Snapshot, Started, Text


def encode(event: Event) -> tuple[str, dict[str, Any]] | None:
    """The SSE event name and data of ``event``; None for an event readers are not sent. The
    data's shapes are the models of ``schemas.SSE_EVENTS``; ``delta`` and ``snapshot`` (one
    field, sent per piece of text) are written as the dict their model dumps, without building
    one per piece."""
    if isinstance(event, Text):
        return "delta", {"text": event.text}  # ChatStreamDelta
    if isinstance(event, Done):
        message = Message.read(event.message, html=True)
        return "done", ChatStreamDone(message=message, stored=event.stored).as_json()
    if isinstance(event, Failed):
        return "error", ChatStreamError(
            error=ChatStreamFailure(code=event.code, message=event.reason),
            partial=event.partial,
            message=Message.read(event.message, html=True),
            stored=event.stored,
        ).as_json()
    if isinstance(event, Started):
        return "start", ChatStreamStart(
            turn_id=event.turn_id,
            conversation=Conversation.read(event.conversation),
            user_message=Message.read(event.user_message),
        ).as_json()
    if isinstance(event, Snapshot):
        return "snapshot", {"text": event.text}  # ChatStreamSnapshot
    return None  # Committed, Heartbeat: not events of the stream


def entry(event: Event) -> Entry:
    """``event`` as an entry that is not in the broker (no id: read from the database)."""
    name, data = encode(event)
    return Entry(None, name, data)


def render(entries: Iterator[Entry | None]) -> Iterator[str]:
    # Closed explicitly when the client goes: the turn's own reader hands the turn on then.
    with closing(entries):
        for item in entries:
            if item is None:
                yield ": keep-alive\n\n"
                continue
            payload = json.dumps(item.data, ensure_ascii=False, separators=(",", ":"))
            head = f"id: {item.id}\n" if item.id else ""
            yield f"{head}event: {item.event}\ndata: {payload}\n\n"


def sse_response(entries: Iterator[Entry | None]) -> Response:
    response = Response(stream_with_context(render(entries)), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
