"""The OpenAI-compatible endpoints (``/v1``): ``GET /v1/models``, ``GET /v1/models/{model}`` and
``POST /v1/chat/completions`` (streamed or not), in the shapes of OpenAI's API reference, so any
OpenAI client (the official SDKs, LangChain, curl) can use a project with no code of ours.

Authentication is an API key (or a login token) as ``Authorization: Bearer``; cookies are never
read here (``auth.loading``). Each call counts against the key's rate and the user's rate over
all keys (``limits.count_openai_call``) and is refused past the key's monthly token budget and
the user's spending budgets. Errors are OpenAI's error object (``errors.openai_error_body``),
with OpenAI's status codes (400 for a bad request, never 422). The reply is a normal turn of
the project (``chat.start.from_app``): stored as a conversation of source ``api``, counted in
the per-version metrics, served by production or the canary's arm.

Streaming: ``chat.completion.chunk`` objects as server-sent ``data:`` lines, the first with the
role, then one per piece of text, then one with ``finish_reason``, then (with
``stream_options.include_usage``) one with ``usage`` and no choices, then ``data: [DONE]``.
A provider failure mid-stream is a ``data: {"error": {...}}`` line (what the official clients
raise as an ``APIError``), then ``[DONE]``. The reply keeps being generated and stored if the
caller goes away, as on the chat page. docs/openai-compatible.md.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import closing

from flask import Blueprint, Response, g, stream_with_context
from flask_login import current_user

from app.api import json_body
from app.chat import services as chat_services
from app.chat import start, turns
from app.chat.broker import Entry
from app.compat import services
from app.errors import openai_error_body
from app.keys import services as keys
from app.limits import count_openai_call, count_openai_key_call
from app.models import Message
from app.prompts.labels import list_labels

bp = Blueprint("compat", __name__, url_prefix="/v1")


@bp.before_request
def count_call():
    """Every call counts, answered or refused, against the key and the user."""
    count_openai_key_call()
    count_openai_call()


def _model(name: str, created) -> dict:
    return {
        "id": name,
        "object": "model",
        "created": int(created.timestamp()),
        "owned_by": "prompthub",
    }


@bp.get("/models")
def models():
    """Each project the caller may use, by its slug, and each label that points at a version
    (``slug@production``, ``slug@staging``); a version by number (``slug@v7``) works too but is
    not listed."""
    data = []
    for project in keys.projects_for(current_user, g.get("api_key")):
        data.append(_model(project.slug, project.created_at))
        _, labels = list_labels(user=current_user, project_id=project.id)
        for label in labels:
            if label.version is not None:
                data.append(_model(f"{project.slug}@{label.name}", project.created_at))
    return {"object": "list", "data": data}


@bp.get("/models/<path:name>")
def model(name: str):
    target = services.resolve(current_user, g.get("api_key"), name)
    return _model(name, target.project.created_at)


# --- chat completions ----------------------------------------------------------------------------

_CHAT_ALLOWED = services._COMMON | {
    "messages",
    "stream_options",
    "n",
    "max_tokens",
    "max_completion_tokens",
}


def _start(data: dict, messages_field: str, max_names: tuple[str, ...], extra_system=None):
    """Check the call and start the turn: (the turn, the options)."""
    key = g.get("api_key")
    target = services.resolve(current_user, key, data.get("model"))
    opts = services.options(data, max_names=max_names)
    convo = services.conversation(
        data.get(messages_field), target.project, field=messages_field, extra_system=extra_system
    )
    services.check_budget(key)
    turn = start.from_app(
        user=current_user,
        project_id=target.project.id,
        message=convo.message,
        history=convo.history,
        version=target.version,
        label=target.label,
        instructions=convo.instructions,
        variables=opts.variables,
        api_key_id=key.id if key is not None else None,
    )
    changes = {}
    if opts.temperature is not None:
        changes["temperature"] = float(opts.temperature)
    capped = services.cap_tokens(opts.max_tokens, turn.request.max_output_tokens)
    if capped is not None:
        changes["max_output_tokens"] = capped
    if changes:
        turn.request = dataclasses.replace(turn.request, **changes)
    return turn, opts


def _finish_reason(turn: start.Turn, status: str, tokens_out: int | None) -> str:
    if tokens_out is not None and tokens_out >= turn.request.max_output_tokens:
        return "length"
    return "stop"


def _usage(tokens_in: int | None, tokens_out: int | None) -> dict:
    prompt, completion = tokens_in or 0, tokens_out or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@bp.post("/chat/completions")
def chat_completions():
    data = json_body()
    services.refuse_unknown(data, _CHAT_ALLOWED)
    turn, opts = _start(data, "messages", ("max_tokens", "max_completion_tokens"))
    name = data["model"]
    if opts.stream:
        return _sse(_chunks(turn, name, opts.include_usage))
    reply: Message = chat_services.complete_turn(turn)  # 502 (OpenAI's shape) on failure
    return {
        "id": f"chatcmpl-{reply.id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": name,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": reply.content,
                    "refusal": None,
                    "annotations": [],
                },
                "finish_reason": _finish_reason(turn, reply.status, reply.tokens_out),
                "logprobs": None,
            }
        ],
        "usage": _usage(reply.tokens_in, reply.tokens_out),
    }


def _chunks(turn: start.Turn, name: str, include_usage: bool) -> Iterator[dict | None]:
    """The turn's events as ``chat.completion.chunk`` objects (None: a keep-alive)."""
    base = {
        "id": f"chatcmpl-{turn.reply_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": name,
    }

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    entries: Iterator[Entry | None] = turns.launch(turn)  # leaving does not stop the turn
    with closing(entries):
        for item in entries:
            if item is None:
                yield None
            elif item.event == "delta":
                yield chunk({"content": item.data["text"]})
            elif item.event == "done":
                message = item.data["message"]
                finish = _finish_reason(turn, message["status"], message["tokens_out"])
                yield chunk({}, finish)
                if include_usage:
                    usage = _usage(message["tokens_in"], message["tokens_out"])
                    yield {**base, "choices": [], "usage": usage}
                return
            elif item.event == "error":
                failure = item.data["error"]
                yield openai_error_body(502, failure["code"], failure["message"])
                return


def _sse(items: Iterator[dict | None]) -> Response:
    def lines() -> Iterator[str]:
        with closing(items):
            for item in items:
                if item is None:
                    yield ": keep-alive\n\n"
                else:
                    yield f"data: {json.dumps(item, ensure_ascii=False, separators=(',', ':'))}\n\n"
        yield "data: [DONE]\n\n"

    response = Response(stream_with_context(lines()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response
