"""OpenRouter chat-completions adapter: ``POST {base}/chat/completions``, as JSON or SSE.

Wire facts followed (docs/providers.md, "OpenRouter chat completions: request", "OpenRouter
chat completions: reply and stream", "Errors and retries"):

- ``model`` always has the org prefix (``openai/gpt-4o-mini``); OpenAI ids are mapped explicitly
  with ``to_openrouter_model`` (and back with ``to_openai_model``). ``messages`` = system,
  history, the new user message. ``max_tokens`` is always sent: without it OpenRouter's credit
  pre-check may answer 402.
- Streams are ``data:`` lines only; ``: OPENROUTER PROCESSING`` comments are skipped by httpx-sse;
  ``data: [DONE]`` ends the stream and EOF before it is malformed. ``choices`` may be ``[]`` (the
  usage-only chunk) and is never indexed blindly; usage is read from whichever chunk
  carries it. A chunk with a top-level ``error`` (``code`` an int or a string,
  ``finish_reason: "error"``) is a failure.
- A 200 JSON body can carry an error too (top-level ``error`` or ``choices[0].error``).
- Error bodies are ``{"error": {"code": int, "message", "metadata"?}}``. The message we keep is
  ``error.message`` plus ``metadata.raw`` (the upstream provider's own words) when present.
  ``metadata.error_type`` refines the status. Moderation metadata (``reasons``,
  ``flagged_input``) or guardrail metadata (``patterns``) on a 403 means content policy; any
  other 403 is an auth/permission error. ``flagged_input`` (the user's text) is never copied
  into messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from app.providers.errors import (
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
    to_openrouter_model,
)

__all__ = ["OpenRouterProvider", "map_error", "to_openai_model", "to_openrouter_model"]

NAME = "openrouter"

# metadata.error_type (and string codes) → our class; the HTTP-like status decides otherwise.
ERROR_TYPES: dict[str, type[ProviderError]] = {
    "rate_limit_exceeded": ProviderRateLimited,
    "provider_overloaded": ProviderUnavailable,
    "provider_unavailable": ProviderUnavailable,
    "server": ProviderUnavailable,
    "server_error": ProviderUnavailable,
    "timeout": ProviderUnavailable,
    "payment_required": ProviderQuotaExceeded,
    "insufficient_quota": ProviderQuotaExceeded,
    "authentication": ProviderAuthError,
    "permission_denied": ProviderAuthError,
    "model_not_found": ProviderModelNotFound,
    "invalid_request": ProviderBadRequest,
    "invalid_request_error": ProviderBadRequest,
    "context_length_exceeded": ProviderBadRequest,
    "content_policy_violation": ProviderContentPolicy,
}


def class_for_status(status: int | None) -> type[ProviderError]:
    if status is None:
        return ProviderUnavailable  # an in-band error without any code
    if status == 402:
        return ProviderQuotaExceeded
    if status == 429:
        return ProviderRateLimited
    if status in (401, 403):
        return ProviderAuthError
    if status == 404:
        return ProviderModelNotFound
    if status in (408, 409) or status >= 500:
        return ProviderUnavailable
    if 400 <= status < 500:
        return ProviderBadRequest
    return ProviderMalformed


def error_message(err: dict[str, Any], fallback: str) -> str:
    """``error.message`` plus the upstream's ``metadata.raw``, provider name and moderation
    reasons (never ``flagged_input``)."""
    message = err.get("message")
    message = message if isinstance(message, str) and message else fallback
    metadata = as_dict(err.get("metadata"))
    raw = metadata.get("raw")
    if raw not in (None, "", {}, []):
        raw_text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
        message = f"{message}: {short(raw_text, 500)}"
    provider_name = metadata.get("provider_name")
    if isinstance(provider_name, str) and provider_name and provider_name not in message:
        message = f"{message} (upstream: {provider_name})"
    reasons = metadata.get("reasons")
    if isinstance(reasons, list) and reasons:
        message = f"{message} (reasons: {', '.join(str(r) for r in reasons)})"
    return message


def map_error(
    err: Any,
    *,
    status: int | None,
    headers: httpx.Headers | None = None,
    fallback: str = "",
) -> ProviderError:
    """Map an OpenRouter error object (``{"code", "message", "metadata"}``) onto our family.
    ``status`` is the HTTP status; for in-band errors an int ``code`` stands in for it."""
    err = as_dict(err)
    headers = headers if headers is not None else httpx.Headers()
    code = err.get("code")
    metadata = as_dict(err.get("metadata"))
    if status is None and as_int(code) is not None:
        status = code
    string_code = code if isinstance(code, str) else None
    error_type = metadata.get("error_type")
    error_type = error_type if isinstance(error_type, str) else None
    message = error_message(err, fallback or (f"HTTP {status}" if status else "stream error"))
    retry_after = parse_retry_after(headers)
    availability = as_dict(err.get("availability"))
    hint = availability.get("retry_after")
    if retry_after is None and isinstance(hint, int | float) and not isinstance(hint, bool):
        retry_after = max(0.0, float(hint))
    kw: dict[str, Any] = {
        "status": status,
        "code": error_type or string_code or (str(status) if status else None),
        "request_id": headers.get("x-generation-id"),
    }
    moderation = any(key in metadata for key in ("reasons", "flagged_input", "patterns"))
    if moderation or is_policy_code(error_type) or is_policy_code(string_code):
        return ProviderContentPolicy(NAME, message, **kw)
    cls = ERROR_TYPES.get(error_type or "") or ERROR_TYPES.get(string_code or "")
    cls = cls or class_for_status(status)
    if cls in (ProviderRateLimited, ProviderUnavailable):
        return cls(NAME, message, retry_after=retry_after, **kw)
    return cls(NAME, message, **kw)


def status_error(response: httpx.Response) -> ProviderError:
    """A non-2xx response (body already read) → our error, with the provider's reason."""
    err, fallback = error_object(response)
    return map_error(err, status=response.status_code, headers=response.headers, fallback=fallback)


def response_format(wanted: OutputFormat) -> dict[str, Any]:
    """``response_format`` in the Chat Completions shape: ``{"type": "json_object"}``, or
    ``{"type": "json_schema", "json_schema": {"name", "strict", "schema"}}`` (nested)."""
    if wanted.type == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {
                "name": wanted.name,
                "strict": wanted.strict,
                "schema": dict(wanted.schema or {}),
            },
        }
    return {"type": "json_object"}


class OpenRouterProvider:
    name = NAME

    def __init__(self, settings: ProviderSettings, client: httpx.Client) -> None:
        self.settings = settings
        self.client = client
        self.model = to_openrouter_model(settings.openrouter_model)
        self.url = settings.openrouter_base_url.rstrip("/") + "/chat/completions"

    @staticmethod
    def is_configured(settings: ProviderSettings) -> bool:
        return bool(settings.openrouter_api_key)

    # -- request --------------------------------------------------------------------------------

    def model_for(self, req: ChatRequest) -> str:
        return req.model_on("openrouter") or self.model

    def build_body(self, req: ChatRequest, *, stream: bool) -> dict[str, Any]:
        messages = [{"role": "system", "content": req.system}] if req.system else []
        messages += [{"role": turn.role, "content": turn.content} for turn in req.history]
        messages.append({"role": "user", "content": req.message})
        body: dict[str, Any] = {
            "model": self.model_for(req),
            "messages": messages,
            "stream": stream,
            "max_tokens": clamp_tokens(req, self.settings),
        }
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.output_format is not None:
            body["response_format"] = response_format(req.output_format)
            # Route only to upstream providers that honour every parameter sent, so the format
            # is not dropped silently by one that ignores it (docs/formats.md).
            body["provider"] = {"require_parameters": True}
        return body

    def headers(self, *, stream: bool) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.settings.openrouter_api_key}",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        if self.settings.openrouter_referer:
            headers["HTTP-Referer"] = self.settings.openrouter_referer
        if self.settings.openrouter_title:
            headers["X-Title"] = self.settings.openrouter_title
            headers["X-OpenRouter-Title"] = self.settings.openrouter_title
        return headers

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
        generation_id = response.headers.get("x-generation-id")
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProviderMalformed(
                NAME, "the response body is not JSON", request_id=generation_id
            ) from exc
        if not isinstance(body, dict):
            raise ProviderMalformed(
                NAME, "the response body is not a JSON object", request_id=generation_id
            )
        if body.get("error"):
            raise map_error(body["error"], status=None, headers=response.headers)
        choice = first_choice(body)
        if choice is None:
            raise ProviderMalformed(NAME, "the response has no choices", request_id=generation_id)
        if choice.get("error") or choice.get("finish_reason") == "error":
            raise map_error(
                choice.get("error"),
                status=None,
                headers=response.headers,
                fallback="the generation failed",
            )
        message = as_dict(choice.get("message"))
        content = message.get("content")
        refusal = message.get("refusal")
        if not content and isinstance(refusal, str) and refusal:
            raise ProviderContentPolicy(NAME, refusal, code="refusal", request_id=generation_id)
        if content is not None and not isinstance(content, str):
            raise ProviderMalformed(
                NAME, "message.content is not a string", request_id=generation_id
            )
        finish = choice.get("finish_reason")
        meta = self.meta(
            body,
            generation_id,
            req,
            as_dict(body.get("usage")),
            finish if isinstance(finish, str) else None,
        )
        return Reply(content or "", meta)

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
                yield from self._chunks(response, req, pacer)
        except httpx.HTTPError as exc:
            raise transport_error(NAME, exc) from exc

    def _chunks(
        self, response: httpx.Response, req: ChatRequest, pacer: Pacer
    ) -> Iterator[StreamEvent]:
        generation_id = response.headers.get("x-generation-id")
        last: dict[str, Any] = {}
        usage: dict[str, Any] = {}
        finish: str | None = None
        try:
            for sse in EventSource(response).iter_sse():
                data = sse.data.strip()
                if not data:
                    continue
                if data == "[DONE]":
                    yield Done(self.meta(last, generation_id, req, usage, finish))
                    return
                chunk = decode(data, generation_id)
                if chunk.get("error"):
                    raise map_error(chunk["error"], status=None, headers=response.headers)
                last = chunk
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                choice = first_choice(chunk)
                if choice is None:  # a usage-only chunk has "choices": []
                    continue
                if choice.get("error") or choice.get("finish_reason") == "error":
                    raise map_error(
                        choice.get("error"),
                        status=None,
                        headers=response.headers,
                        fallback="the generation failed mid-stream",
                    )
                content = as_dict(choice.get("delta")).get("content")
                if isinstance(content, str) and content:
                    pacer.start()  # from the first text on (no-op after it)
                    yield Text(content)
                if isinstance(choice.get("finish_reason"), str):
                    finish = choice["finish_reason"]
                    pacer.stop()  # the text is over: usage and [DONE] are read at once
        except SSEError as exc:
            raise ProviderMalformed(
                NAME, f"not an event stream: {exc}", request_id=generation_id
            ) from exc
        raise ProviderMalformed(
            NAME, "the stream ended before [DONE] (truncated)", request_id=generation_id
        )

    # -- helpers --------------------------------------------------------------------------------

    def meta(
        self,
        body: dict[str, Any],
        generation_id: str | None,
        req: ChatRequest,
        usage: dict[str, Any],
        finish: str | None,
    ) -> ReplyMeta:
        model = body.get("model")
        response_id = body.get("id")
        return ReplyMeta(
            provider=NAME,
            model=model if isinstance(model, str) and model else self.model_for(req),
            response_id=response_id if isinstance(response_id, str) else generation_id,
            tokens_in=as_int(usage.get("prompt_tokens")),
            tokens_out=as_int(usage.get("completion_tokens")),
            finish_reason=finish,
        )


def first_choice(body: dict[str, Any]) -> dict[str, Any] | None:
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def decode(data: str, generation_id: str | None) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise ProviderMalformed(
            NAME, f"invalid JSON in a chunk: {short(data, 80)}", request_id=generation_id
        ) from exc
    if not isinstance(chunk, dict):
        raise ProviderMalformed(NAME, "a chunk is not a JSON object", request_id=generation_id)
    return chunk
