"""OpenRouter chat-completions adapter: ``POST {base}/chat/completions``.

Wire facts this follows (shared/PROTOCOLS.md §D): ``data:`` chunks only, ``:`` comments are
keep-alives, ``data: [DONE]`` ends the stream; text is ``choices[0].delta.content`` but
``choices`` may be empty (usage chunk); usage comes in whichever chunk carries it; an ``error``
object in a chunk, or in a 200 body, is an error (code may be an int or a string); errors carry
``metadata.raw`` with the upstream reason. ``max_tokens`` is always sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import EventSource

from app.providers.base import (
    ChatRequest,
    ProviderContentPolicy,
    ProviderError,
    ProviderMalformed,
    ProviderSettings,
    Reply,
    ReplyMeta,
    StreamEnd,
    StreamEvent,
    TextDelta,
    classify_code,
    classify_status,
    parse_retry_after,
    transport_error,
)

NAME = "openrouter"
# Explicit model id mapping between the two providers' naming schemes.
OPENAI_TO_OPENROUTER = {
    "gpt-4o-mini": "openai/gpt-4o-mini",
    "gpt-4o": "openai/gpt-4o",
    "gpt-4.1-mini": "openai/gpt-4.1-mini",
    "gpt-4.1": "openai/gpt-4.1",
}
OPENROUTER_TO_OPENAI = {v: k for k, v in OPENAI_TO_OPENROUTER.items()}
POLICY_TYPES = {"content_policy_violation", "moderation", "guardrail"}


def to_openrouter_model(model: str) -> str:
    if "/" in model:
        return model
    return OPENAI_TO_OPENROUTER.get(model, f"openai/{model}")


def to_openai_model(model: str) -> str:
    return OPENROUTER_TO_OPENAI.get(model, model.split("/", 1)[-1])


def _message(err: dict[str, Any]) -> str:
    message = str(err.get("message") or "the provider reported an error")
    metadata = err.get("metadata") if isinstance(err.get("metadata"), dict) else {}
    raw = metadata.get("raw")
    if raw and str(raw) not in message:
        message = f"{message} ({raw})"
    reasons = metadata.get("reasons")
    if reasons:
        message = f"{message}: {', '.join(map(str, reasons))}"
    return message


def _is_policy(err: dict[str, Any]) -> bool:
    metadata = err.get("metadata") if isinstance(err.get("metadata"), dict) else {}
    if metadata.get("error_type") in POLICY_TYPES:
        return True
    return bool(
        metadata.get("reasons") or metadata.get("flagged_input") or metadata.get("patterns")
    )


def error_from_body(err: Any, *, status: int | None, retry_after: float | None) -> ProviderError:
    if not isinstance(err, dict):
        err = {"message": str(err)}
    message = _message(err)
    if _is_policy(err):
        return ProviderContentPolicy(NAME, message, status=status, code="content_policy")
    metadata = err.get("metadata") if isinstance(err.get("metadata"), dict) else {}
    code = err.get("code")
    # error.code is documented as an int (HTTP-like); one example uses a string.
    http_like = code if isinstance(code, int) else (int(code) if str(code).isdigit() else None)
    typed = metadata.get("error_type") or (code if isinstance(code, str) else None)
    effective = status if status and status != 200 else http_like
    if effective:
        error = classify_status(NAME, effective, message, code=typed, retry_after=retry_after)
    else:
        error = classify_code(NAME, typed, message)
    return error


class OpenRouterProvider:
    name = NAME

    def __init__(self, settings: ProviderSettings, client: httpx.Client) -> None:
        self.settings = settings
        self.client = client
        self.model = to_openrouter_model(settings.openrouter_model)
        self.url = settings.openrouter_base_url.rstrip("/") + "/chat/completions"

    def body(self, req: ChatRequest, *, stream: bool) -> dict[str, Any]:
        messages = [{"role": "system", "content": req.system}]
        messages += [{"role": t.role, "content": t.content} for t in req.history]
        messages.append({"role": "user", "content": req.message})
        body: dict[str, Any] = {
            "model": to_openrouter_model(req.model) if req.model else self.model,
            "messages": messages,
            "stream": stream,
            "max_tokens": req.max_output_tokens or self.settings.max_output_tokens,
        }
        if req.temperature is not None:
            body["temperature"] = req.temperature
        return body

    def headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.settings.openrouter_api_key}"}
        if self.settings.openrouter_referer:
            headers["HTTP-Referer"] = self.settings.openrouter_referer
        if self.settings.openrouter_title:
            headers["X-Title"] = self.settings.openrouter_title
            headers["X-OpenRouter-Title"] = self.settings.openrouter_title
        return headers

    def http_error(self, response: httpx.Response) -> ProviderError:
        try:
            err = response.json().get("error")
        except (ValueError, AttributeError):
            err = None
        if err is None:
            err = {"message": response.text[:300] or response.reason_phrase}
        return error_from_body(
            err, status=response.status_code, retry_after=parse_retry_after(response.headers)
        )

    def meta(self, data: dict[str, Any], usage: dict[str, Any] | None, finish: str | None):
        usage = usage or {}
        return ReplyMeta(
            provider=NAME,
            model=data.get("model") or self.model,
            response_id=data.get("id"),
            tokens_in=usage.get("prompt_tokens"),
            tokens_out=usage.get("completion_tokens"),
            finish_reason=finish,
        )

    def complete(self, req: ChatRequest) -> Reply:
        try:
            response = self.client.post(
                self.url, json=self.body(req, stream=False), headers=self.headers()
            )
        except httpx.HTTPError as exc:
            raise transport_error(NAME, exc) from exc
        if response.status_code >= 400:
            raise self.http_error(response)
        try:
            data = response.json()
        except ValueError as exc:
            raise ProviderMalformed(NAME, "the response body is not JSON") from exc
        if not isinstance(data, dict):
            raise ProviderMalformed(NAME, "the response body is not an object")
        if data.get("error"):
            raise error_from_body(data["error"], status=None, retry_after=None)
        choices = data.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else None
        if choice is None:
            raise ProviderMalformed(NAME, "the response has no choices")
        if choice.get("error"):
            raise error_from_body(choice["error"], status=None, retry_after=None)
        message = choice.get("message") or {}
        text = message.get("content") or ""
        if not text and message.get("refusal"):
            raise ProviderContentPolicy(NAME, str(message["refusal"]), code="refusal")
        return Reply(text, self.meta(data, data.get("usage"), choice.get("finish_reason")))

    def stream(self, req: ChatRequest) -> Iterator[StreamEvent]:
        try:
            with self.client.stream(
                "POST", self.url, json=self.body(req, stream=True), headers=self.headers()
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self.http_error(response)
                yield from self._events(response)
        except httpx.HTTPError as exc:
            raise transport_error(NAME, exc) from exc

    def _events(self, response: httpx.Response) -> Iterator[StreamEvent]:
        first: dict[str, Any] = {}
        usage: dict[str, Any] | None = None
        finish: str | None = None
        for sse in EventSource(response).iter_sse():
            if not sse.data:
                continue
            if sse.data.strip() == "[DONE]":
                yield StreamEnd(self.meta(first, usage, finish))
                return
            try:
                chunk = json.loads(sse.data)
            except ValueError as exc:
                raise ProviderMalformed(NAME, "a stream chunk is not valid JSON") from exc
            if not isinstance(chunk, dict):
                raise ProviderMalformed(NAME, "a stream chunk is not an object")
            if chunk.get("error"):
                raise error_from_body(chunk["error"], status=None, retry_after=None)
            first = first or chunk
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                delta = choice.get("delta") or {}
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str) and content:
                    yield TextDelta(content)
        raise ProviderMalformed(NAME, "the stream ended without [DONE]")
