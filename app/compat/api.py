"""The OpenAI-compatible endpoints (``/v1``): ``GET /v1/models``, ``GET /v1/models/{model}``,
``POST /v1/chat/completions`` and ``POST /v1/responses`` (streamed or not), in the shapes of
OpenAI's API reference, so any OpenAI client (the official SDKs, LangChain, curl) can use a
project with no code of ours.

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
import re
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
from app.errors import BadRequest, NotFound, openai_error_body
from app.keys import services as keys
from app.limits import count_openai_call, count_openai_key_call
from app.models import Message
from app.models.base import db_int
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
    return _model(name, target.created_at)


# --- chat completions ----------------------------------------------------------------------------

_CHAT_ALLOWED = services.COMMON_PARAMETERS | {
    "messages",
    "stream_options",
    "n",
    "max_tokens",
    "max_completion_tokens",
}


def _start(
    data: dict,
    messages: object,
    field: str,
    max_names: tuple[str, ...],
    *,
    extra_system: str | None = None,
    previous: int | None = None,
):
    """Check the call and start the turn: (the turn, the options). ``previous``: the stored
    reply a Responses call continues."""
    key = g.get("api_key")
    target = services.resolve(current_user, key, data.get("model"))
    opts = services.options(data, max_names=max_names)
    convo = services.conversation(
        messages, target.system_policy, field=field, extra_system=extra_system
    )
    services.check_budget(key)
    if previous is not None:
        if target.version is not None or target.label is not None:
            raise BadRequest(
                "A continued response keeps its conversation's version: name the project "
                "without @version.",
                fields={"model": "The project's slug alone."},
            )
        turn = start.follow_up(
            user=current_user,
            reply_id=previous,
            project_id=target.project_id,
            message=convo.message,
            history=convo.history,
            instructions=convo.instructions,
            variables=opts.variables,
        )
    else:
        turn = start.from_app(
            user=current_user,
            project_id=target.project_id,
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
    max_names = ("max_tokens", "max_completion_tokens")
    turn, opts = _start(data, data.get("messages"), "messages", max_names)
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


def _sse(items: Iterator[dict | None], *, named: bool = False) -> Response:
    """Server-sent events: each item a ``data:`` line (``named``: with an ``event:`` line of
    its ``type``, as the Responses API sends them); None a keep-alive comment. Chat
    Completions end with ``data: [DONE]``; the Responses API with its last event."""

    def lines() -> Iterator[str]:
        with closing(items):
            for item in items:
                if item is None:
                    yield ": keep-alive\n\n"
                    continue
                payload = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
                yield (
                    f"event: {item['type']}\ndata: {payload}\n\n"
                    if named
                    else (f"data: {payload}\n\n")
                )
        if not named:
            yield "data: [DONE]\n\n"

    response = Response(stream_with_context(lines()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


# --- responses -----------------------------------------------------------------------------------

_RESPONSES_ALLOWED = services.COMMON_PARAMETERS | {
    "input",
    "instructions",
    "previous_response_id",
    "max_output_tokens",
    "stream_options",
}
_RESPONSE_ID = re.compile(r"resp_([1-9][0-9]{0,9})")


def _previous(data: dict) -> int | None:
    given = data.get("previous_response_id")
    if given is None:
        return None
    match = _RESPONSE_ID.fullmatch(given) if isinstance(given, str) else None
    number = db_int(match.group(1)) if match else None
    if number is None:
        raise NotFound("No such response in this project.", code="response_not_found")
    return number


def _instructions(data: dict) -> str | None:
    value = data.get("instructions")
    if value is not None and not isinstance(value, str):
        raise BadRequest("`instructions` must be a string.", fields={"instructions": "A string."})
    return value or None


@bp.post("/responses")
def responses():
    data = json_body()
    services.refuse_unknown(data, _RESPONSES_ALLOWED)
    given = data.get("input")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else given
    turn, opts = _start(
        data,
        items,
        "input",
        ("max_output_tokens",),
        extra_system=_instructions(data),
        previous=_previous(data),
    )
    shape = _ResponseShape(turn, data, opts)
    if opts.stream:
        return _sse(_response_events(turn, shape), named=True)
    reply: Message = chat_services.complete_turn(turn)  # 502 (OpenAI's shape) on failure
    return shape.response(
        _status(turn, reply.status, reply.tokens_out),
        reply.content,
        usage=(reply.tokens_in, reply.tokens_out),
    )


def _status(turn: start.Turn, status: str, tokens_out: int | None) -> str:
    return "incomplete" if _finish_reason(turn, status, tokens_out) == "length" else "completed"


class _ResponseShape:
    """The Response object of one turn, at each stage (OpenAI's ``Response`` schema)."""

    def __init__(self, turn: start.Turn, data: dict, opts: services.Options) -> None:
        self.id = f"resp_{turn.reply_id}"
        self.item_id = f"msg_{turn.reply_id}"
        self.created = int(time.time())
        self.data = data
        self.opts = opts
        self.max_output_tokens = turn.request.max_output_tokens

    def item(self, status: str, text: str | None) -> dict:
        content = [] if text is None else [self.part(text)]
        return {
            "type": "message",
            "id": self.item_id,
            "status": status,
            "role": "assistant",
            "content": content,
        }

    @staticmethod
    def part(text: str) -> dict:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def response(self, status: str, text: str | None = None, *, usage=None, error=None) -> dict:
        done = status in ("completed", "incomplete")
        state = "completed" if done else "incomplete" if status == "failed" else status
        output = [] if text is None else [self.item(state, text)]
        body = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": error,
            "incomplete_details": (
                {"reason": "max_output_tokens"} if status == "incomplete" else None
            ),
            "instructions": _instructions(self.data),
            "max_output_tokens": self.max_output_tokens,
            "model": self.data["model"],
            "output": output,
            "parallel_tool_calls": False,
            "previous_response_id": self.data.get("previous_response_id"),
            "store": True,
            "temperature": self.opts.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": "none",
            "tools": [],
            "top_p": None,
            "truncation": "disabled",
            "metadata": self.data.get("metadata") or {},
        }
        if usage is not None:
            tokens_in, tokens_out = (usage[0] or 0), (usage[1] or 0)
            body["usage"] = {
                "input_tokens": tokens_in,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": tokens_out,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": tokens_in + tokens_out,
            }
        return body


def _response_events(turn: start.Turn, shape: _ResponseShape) -> Iterator[dict | None]:
    """The turn's events as the Responses API's stream events, numbered."""
    number = 0

    def event(kind: str, **fields) -> dict:
        nonlocal number
        number += 1
        return {"type": kind, "sequence_number": number - 1, **fields}

    place = {"item_id": shape.item_id, "output_index": 0, "content_index": 0}
    yield event("response.created", response=shape.response("in_progress"))
    yield event("response.in_progress", response=shape.response("in_progress"))
    yield event("response.output_item.added", output_index=0, item=shape.item("in_progress", None))
    yield event("response.content_part.added", **place, part=shape.part(""))
    text: list[str] = []
    entries: Iterator[Entry | None] = turns.launch(turn)  # leaving does not stop the turn
    with closing(entries):
        for item in entries:
            if item is None:
                yield None
            elif item.event == "delta":
                text.append(item.data["text"])
                yield event(
                    "response.output_text.delta", **place, delta=item.data["text"], logprobs=[]
                )
            elif item.event == "done":
                message = item.data["message"]
                whole = "".join(text)
                status = _status(turn, message["status"], message["tokens_out"])
                yield event("response.output_text.done", **place, text=whole, logprobs=[])
                yield event("response.content_part.done", **place, part=shape.part(whole))
                yield event(
                    "response.output_item.done", output_index=0, item=shape.item("completed", whole)
                )
                usage = (message["tokens_in"], message["tokens_out"])
                final = shape.response(status, whole, usage=usage)
                kind = "response.completed" if status == "completed" else "response.incomplete"
                yield event(kind, response=final)
                return
            elif item.event == "error":
                failure = item.data["error"]
                error = {"code": "server_error", "message": failure["message"]}
                yield event(
                    "response.failed", response=shape.response("failed", "".join(text), error=error)
                )
                return
