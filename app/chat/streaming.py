"""Server-sent events for chat: the one place where chat events become bytes on the wire.

Events: ``start`` (conversation and stored user message), ``delta`` (text), ``done`` (the
assistant message with its rendered HTML) or ``error`` (code, the provider's reason, the partial
reply). Both terminal events carry ``stored``: false when the database was unreachable as the
reply ended, so it waits in the server's spool and is written when the database is back. Comment
lines (``: keep-alive``) are heartbeats. The page and the JSON API both return ``sse_response``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Response, stream_with_context

from app.chat.services import ChatEvent, Delta, Done, Failed, Started, Waiting


def frame(event: str, data: dict) -> str:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n"


def render(events: Iterator[ChatEvent]) -> Iterator[str]:
    from app.chat.api import conversation_json, message_json

    for event in events:
        if isinstance(event, Delta):
            yield frame("delta", {"text": event.text})
        elif isinstance(event, Waiting):
            yield ": keep-alive\n\n"
        elif isinstance(event, Started):
            yield frame(
                "start",
                {
                    "conversation": conversation_json(event.conversation),
                    "user_message": message_json(event.user_message),
                },
            )
        elif isinstance(event, Done):
            yield frame(
                "done", {"message": message_json(event.message, html=True), "stored": event.stored}
            )
        elif isinstance(event, Failed):
            yield frame(
                "error",
                {
                    "error": {"code": event.code, "message": event.error},
                    "partial": event.partial,
                    "message": message_json(event.message, html=True),
                    "stored": event.stored,
                },
            )


def sse_response(events: Iterator[ChatEvent]) -> Response:
    response = Response(stream_with_context(render(events)), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
