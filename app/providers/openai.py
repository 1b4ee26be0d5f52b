"""OpenAI Responses API adapter: ``POST {base}/responses``, JSON or server-sent events.

Wire facts this follows (shared/PROTOCOLS.md §A, §B): instructions carry the system prompt;
``input`` is the history plus the new message as role/content items; there is no
``output_text`` field on the wire (we join ``output[*].content[*]`` of type ``output_text``);
streams dispatch on the JSON ``type``, have no ``[DONE]``, end with ``response.completed``,
``response.incomplete`` or ``response.failed``; ``error`` events come nested (live) or flat
(documented); unknown types such as ``keepalive`` are ignored; EOF without a terminal event is
a failure.
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

NAME = "openai"
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


class OpenAIProvider:
    name = NAME

    def __init__(self, settings: ProviderSettings, client: httpx.Client) -> None:
        self.settings = settings
        self.client = client
        self.model = settings.openai_model
        self.url = settings.openai_base_url.rstrip("/") + "/responses"

    # --- request -----------------------------------------------------------------------------

    def body(self, req: ChatRequest, *, stream: bool) -> dict[str, Any]:
        items = [{"role": t.role, "content": t.content} for t in req.history]
        items.append({"role": "user", "content": req.message})
        body: dict[str, Any] = {
            "model": req.model or self.model,
            "instructions": req.system,
            "input": items,
            "max_output_tokens": max(16, req.max_output_tokens),
            "store": self.settings.openai_store,
            "stream": stream,
        }
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if stream:
            body["stream_options"] = {"include_obfuscation": False}
        return body

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.openai_api_key}"}

    # --- errors ------------------------------------------------------------------------------

    def http_error(self, response: httpx.Response) -> ProviderError:
        try:
            err = response.json().get("error") or {}
        except (ValueError, AttributeError):
            err = {}
        if not isinstance(err, dict):
            err = {"message": str(err)}
        message = err.get("message") or response.reason_phrase or f"HTTP {response.status_code}"
        code = err.get("code") or err.get("type")
        return classify_status(
            NAME,
            response.status_code,
            message,
            code=code,
            retry_after=parse_retry_after(response.headers),
        )

    @staticmethod
    def event_error(event: dict[str, Any]) -> ProviderError:
        # Live streams nest the error; the spec documents it flat. Read both.
        err = event.get("error") if isinstance(event.get("error"), dict) else event
        code = err.get("code") or err.get("type")
        message = err.get("message") or "the provider reported an error"
        return classify_code(NAME, code, message)

    # --- non-streaming -----------------------------------------------------------------------

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
            raise self.event_error(data)
        if data.get("status") == "failed":
            raise self.event_error({"error": data.get("error") or {}})
        text, refusal = self.output_text(data)
        if refusal and not text:
            raise ProviderContentPolicy(NAME, refusal, code="refusal")
        return Reply(text, self.meta(data, response))

    @staticmethod
    def output_text(data: dict[str, Any]) -> tuple[str, str]:
        """Join every ``output_text`` part of every message item (never assume ``output[0]``)."""
        texts, refusals = [], []
        for item in data.get("output") or []:
            if not isinstance(item, dict) or item.get("type") != "message":
                continue
            for part in item.get("content") or []:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "output_text":
                    texts.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusals.append(part.get("refusal") or "")
        return "".join(texts), "".join(refusals)

    def meta(self, data: dict[str, Any], response: httpx.Response | None = None) -> ReplyMeta:
        usage = data.get("usage") or {}
        finish = data.get("status")
        details = data.get("incomplete_details") or {}
        if finish == "incomplete":
            finish = details.get("reason") or "incomplete"
        elif finish == "completed":
            finish = "stop"
        return ReplyMeta(
            provider=NAME,
            model=data.get("model") or self.model,
            response_id=data.get("id")
            or (response.headers.get("x-request-id") if response else None),
            tokens_in=usage.get("input_tokens"),
            tokens_out=usage.get("output_tokens"),
            finish_reason=finish,
        )

    # --- streaming ---------------------------------------------------------------------------

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
        for sse in EventSource(response).iter_sse():
            if not sse.data or sse.data == "[DONE]":
                continue
            try:
                event = json.loads(sse.data)
            except ValueError as exc:
                raise ProviderMalformed(NAME, "a stream event is not valid JSON") from exc
            if not isinstance(event, dict):
                raise ProviderMalformed(NAME, "a stream event is not an object")
            kind = event.get("type") or sse.event
            if kind == "response.output_text.delta":
                delta = event.get("delta")
                if isinstance(delta, str) and delta:
                    yield TextDelta(delta)
            elif kind in ("response.completed", "response.incomplete"):
                yield StreamEnd(self.meta(event.get("response") or {}, response))
                return
            elif kind == "response.failed":
                raise self.event_error({"error": (event.get("response") or {}).get("error") or {}})
            elif kind == "error":
                raise self.event_error(event)
            # Anything else (created, in_progress, *.done, keepalive, unknown) is ignored.
        raise ProviderMalformed(NAME, "the stream ended without a terminal event")
