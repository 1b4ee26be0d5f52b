"""OpenAI Responses API adapter: ``POST {base}/responses``, as JSON or as server-sent events.

Wire facts followed (docs/providers.md, "OpenAI Responses: request", "OpenAI Responses: reply",
"OpenAI Responses: stream events", "Errors and retries"):

- ``instructions`` carries the system prompt; ``input`` is the history plus the new message as
  ``{"role", "content": "<string>"}`` items (assistant turns as plain strings). No server-side
  state: ``previous_response_id`` is never used, ``store`` comes from the settings.
- There is no ``output_text`` field on the wire: text is every ``output[*]`` message item's
  ``output_text`` content parts, joined. A ``refusal`` part is a content-policy error.
- Streams dispatch on the JSON ``type`` (the ``event:`` line is ignored), have no ``[DONE]`` and
  end with ``response.completed`` / ``response.incomplete`` (success) or ``response.failed``.
  ``error`` events come nested (live) or flat (documented): we read ``ev.get("error") or ev``.
  Unknown types (``keepalive``, ...) are ignored. EOF without a terminal event is malformed.
- Errors before the stream are ordinary JSON bodies ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from app.providers.errors import (
    CONTEXT_CODES,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderContentPolicy,
    ProviderError,
    ProviderMalformed,
    ProviderModelNotFound,
    ProviderQuotaExceeded,
    ProviderRateLimited,
    ProviderUnavailable,
    as_dict,
    as_int,
    error_object,
    is_policy_code,
    parse_retry_after,
    short,
    should_retry_hint,
    transport_error,
)
from app.providers.events import Done, Text
from app.providers.transport import Cancel, Pacer, open_stream
from app.providers.types import (
    ChatRequest,
    OutputFormat,
    ProviderSettings,
    Reply,
    ReplyMeta,
    StreamEvent,
    clamp_tokens,
    to_openai_model,
)

NAME = "openai"
MIN_OUTPUT_TOKENS = 16  # the API rejects max_output_tokens below 16


def error_from_body(
    err: Any,
    *,
    status: int | None,
    headers: httpx.Headers | None = None,
    fallback: str = "",
) -> ProviderError:
    """Map an OpenAI error onto our family: the ``error`` object of an HTTP error body, of an
    in-band ``error`` event (either shape) or of ``response.error``. ``status`` is None for
    in-band errors, which are then classified by code alone."""
    err = as_dict(err)
    message = err.get("message") if isinstance(err.get("message"), str) else None
    code = err.get("code") if isinstance(err.get("code"), str) else None
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    if not message:
        message = fallback or (f"HTTP {status}" if status else "stream error without a message")
    headers = headers if headers is not None else httpx.Headers()
    kw: dict[str, Any] = {
        "status": status,
        "code": code or etype,
        "request_id": headers.get("x-request-id"),
        "retryable": should_retry_hint(headers),
    }
    if "insufficient_quota" in (code, etype):
        return ProviderQuotaExceeded(NAME, message, **kw)
    if is_policy_code(code) or is_policy_code(etype):
        return ProviderContentPolicy(NAME, message, **kw)
    if status == 429 or code == "rate_limit_exceeded" or etype in ("tokens", "requests"):
        return ProviderRateLimited(NAME, message, retry_after=parse_retry_after(headers), **kw)
    if status is None:  # in-band: by code only
        if code in CONTEXT_CODES or (code or "").startswith(("invalid_", "image_")):
            return ProviderBadRequest(NAME, message, **kw)
        return ProviderUnavailable(NAME, message, **kw)
    if status in (401, 403):
        return ProviderAuthError(NAME, message, **kw)
    if status == 404:
        return ProviderModelNotFound(NAME, message, **kw)
    if status in (408, 409) or status >= 500:
        return ProviderUnavailable(NAME, message, retry_after=parse_retry_after(headers), **kw)
    if 400 <= status < 500:
        return ProviderBadRequest(NAME, message, **kw)
    return ProviderMalformed(NAME, f"unexpected HTTP status {status}: {message}", **kw)


def status_error(response: httpx.Response) -> ProviderError:
    """A non-2xx response (body already read) → our error, with the provider's reason."""
    err, fallback = error_object(response)
    return error_from_body(
        err, status=response.status_code, headers=response.headers, fallback=fallback
    )


def text_format(wanted: OutputFormat) -> dict[str, Any]:
    """``text.format`` (``TextResponseFormatConfiguration``): ``{"type": "json_object"}``, or
    ``{"type": "json_schema", "name", "schema", "strict"}`` (flat, unlike Chat Completions)."""
    if wanted.type == "json_schema":
        return {
            "type": "json_schema",
            "name": wanted.name,
            "schema": dict(wanted.schema or {}),
            "strict": wanted.strict,
        }
    return {"type": "json_object"}


class OpenAIProvider:
    name = NAME

    def __init__(self, settings: ProviderSettings, client: httpx.Client) -> None:
        self.settings = settings
        self.client = client
        self.model = to_openai_model(settings.openai_model)
        self.url = settings.openai_base_url.rstrip("/") + "/responses"

    @staticmethod
    def is_configured(settings: ProviderSettings) -> bool:
        return bool(settings.openai_api_key)

    # -- request --------------------------------------------------------------------------------

    def model_for(self, req: ChatRequest) -> str:
        return req.model_on("openai") or self.model

    def build_body(self, req: ChatRequest, *, stream: bool) -> dict[str, Any]:
        items = [{"role": turn.role, "content": turn.content} for turn in req.history]
        items.append({"role": "user", "content": req.message})
        body: dict[str, Any] = {
            "model": self.model_for(req),
            "instructions": req.system,
            "input": items,
            "max_output_tokens": clamp_tokens(req, self.settings, MIN_OUTPUT_TOKENS),
            "store": self.settings.openai_store,
            "stream": stream,
        }
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.output_format is not None:
            body["text"] = {"format": text_format(req.output_format)}
        if stream:
            body["stream_options"] = {"include_obfuscation": False}
        return body

    def headers(self, *, stream: bool) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.settings.openai_api_key}",
            "Accept": "text/event-stream" if stream else "application/json",
        }

    # -- non-streaming --------------------------------------------------------------------------

    def complete(self, req: ChatRequest) -> Reply:
        try:
            response = self.client.post(
                self.url,
                json=self.build_body(req, stream=False),
                headers=self.headers(stream=False),
            )
        except httpx.HTTPError as exc:
            raise transport_error(NAME, exc) from exc
        if not response.is_success:
            raise status_error(response)
        request_id = response.headers.get("x-request-id")
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProviderMalformed(
                NAME, "the response body is not JSON", request_id=request_id
            ) from exc
        if not isinstance(body, dict):
            raise ProviderMalformed(
                NAME, "the response body is not a JSON object", request_id=request_id
            )
        if body.get("error") or body.get("status") == "failed":
            raise error_from_body(
                body.get("error"),
                status=None,
                headers=response.headers,
                fallback="the response failed without an error message",
            )
        output = body.get("output")
        if not isinstance(output, list):
            raise ProviderMalformed(NAME, "the response has no output list", request_id=request_id)
        text, refusal = read_output(output)
        if refusal is not None:
            raise ProviderContentPolicy(
                NAME,
                refusal or "the model refused to answer",
                code="refusal",
                request_id=request_id,
            )
        return Reply(text, self.meta(body, request_id, req))

    # -- streaming ------------------------------------------------------------------------------

    def stream(self, req: ChatRequest, cancel: Cancel | None = None) -> Iterator[StreamEvent]:
        body = self.build_body(req, stream=True)
        try:
            with open_stream(
                self.client,
                self.url,
                json=body,
                headers=self.headers(stream=True),
                cancel=cancel,
                status_error=status_error,
                pace=self.settings.stream_read_pace_seconds,
            ) as (response, pacer):
                yield from self._events(response, req, pacer)
        except httpx.HTTPError as exc:
            raise transport_error(NAME, exc) from exc

    def _events(
        self, response: httpx.Response, req: ChatRequest, pacer: Pacer
    ) -> Iterator[StreamEvent]:
        request_id = response.headers.get("x-request-id")
        try:
            for sse in EventSource(response).iter_sse():
                data = sse.data.strip()
                if not data:
                    continue
                if data == "[DONE]":  # never sent by OpenAI; tolerated as the SDK does
                    break
                event = decode(data, request_id)
                kind = event.get("type")
                if kind == "response.output_text.delta":
                    delta = event.get("delta")
                    if isinstance(delta, str) and delta:
                        pacer.start()  # from the first text on (no-op after it)
                        yield Text(delta)
                elif kind == "response.output_text.done":
                    pacer.stop()  # the text is over: the terminal event is read at once
                elif kind in ("response.completed", "response.incomplete"):
                    yield Done(self.meta(as_dict(event.get("response")), request_id, req))
                    return
                elif kind == "response.failed":
                    failed = as_dict(event.get("response"))
                    raise error_from_body(
                        failed.get("error"),
                        status=None,
                        headers=response.headers,
                        fallback="response.failed without an error message",
                    )
                elif kind == "error":
                    raise error_from_body(
                        inband_error(event), status=None, headers=response.headers
                    )
                elif kind == "response.refusal.done":
                    refusal = event.get("refusal")
                    raise ProviderContentPolicy(
                        NAME,
                        refusal if isinstance(refusal, str) and refusal else "the model refused",
                        code="refusal",
                        request_id=request_id,
                    )
                # Everything else (created, in_progress, *.added, *.done, keepalive, unknown
                # future types) is bookkeeping we do not need.
        except SSEError as exc:
            raise ProviderMalformed(
                NAME, f"not an event stream: {exc}", request_id=request_id
            ) from exc
        raise ProviderMalformed(
            NAME, "the stream ended without a terminal event (truncated)", request_id=request_id
        )

    # -- helpers --------------------------------------------------------------------------------

    def meta(self, body: dict[str, Any], request_id: str | None, req: ChatRequest) -> ReplyMeta:
        usage = as_dict(body.get("usage"))
        model = body.get("model")
        finish = "stop"
        if body.get("status") == "incomplete":
            reason = as_dict(body.get("incomplete_details")).get("reason")
            finish = reason if isinstance(reason, str) and reason else "incomplete"
        response_id = body.get("id")
        return ReplyMeta(
            provider=NAME,
            model=model if isinstance(model, str) and model else self.model_for(req),
            response_id=response_id if isinstance(response_id, str) else request_id,
            tokens_in=as_int(usage.get("input_tokens")),
            tokens_out=as_int(usage.get("output_tokens")),
            finish_reason=finish,
        )


def decode(data: str, request_id: str | None) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise ProviderMalformed(
            NAME, f"invalid JSON in an event: {short(data, 80)}", request_id=request_id
        ) from exc
    if not isinstance(event, dict):
        raise ProviderMalformed(NAME, "an event is not a JSON object", request_id=request_id)
    return event


def inband_error(event: dict[str, Any]) -> dict[str, Any]:
    """The error of an ``error`` event: nested under ``error`` (live) or flat on the event
    (documented), where ``type`` is the event's own type, not an error type."""
    nested = event.get("error")
    if isinstance(nested, dict) and nested:
        return nested
    return {key: event.get(key) for key in ("code", "message", "param")}


def read_output(output: list[Any]) -> tuple[str, str | None]:
    """Join every message item's ``output_text`` parts (never assume ``output[0]`` is the
    message); return the text and the refusal, when a part is one."""
    parts: list[str] = []
    refusal: str | None = None
    for item in output:
        item = as_dict(item)
        if item.get("type") != "message":
            continue
        content = item.get("content")
        for part in content if isinstance(content, list) else []:
            part = as_dict(part)
            if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif part.get("type") == "refusal":
                value = part.get("refusal")
                refusal = value if isinstance(value, str) else ""
    return "".join(parts), refusal
