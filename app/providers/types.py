"""What passes between the app and a provider: the request and reply dataclasses, the
``Provider`` protocol every adapter implements, the adapters' settings and model-id helpers.

Plain values only, no I/O. ``StreamEvent`` names the events an adapter yields (``events.py``);
``Cancel`` comes from ``transport.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Literal, Protocol, runtime_checkable

from app.providers.events import Done, Text
from app.providers.transport import Cancel

# --- requests, replies, stream events -----------------------------------------------------------


@dataclass(frozen=True)
class ChatTurn:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class OutputFormat:
    """The reply's format asked of the provider (docs/formats.md): ``json_object`` (any JSON
    object) or ``json_schema`` (JSON matching ``schema``, strictly). Plain text is no format."""

    type: Literal["json_object", "json_schema"]
    name: str | None = None  # json_schema only: OpenAI's and OpenRouter's required name
    schema: Mapping | None = None
    strict: bool = True

    def instruction(self) -> str:
        """The words that ask for the format when the provider's own field is not used
        (the fallback for a provider that refuses it)."""
        if self.type == "json_schema":
            return (
                "Answer with one JSON value only (no prose, no code fences) that matches this "
                "JSON Schema:\n" + _json(self.schema)
            )
        return "Answer with one JSON object only (no prose, no code fences)."


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class ChatRequest:
    """One turn to answer: the system prompt, prior turns (oldest first) and the new message."""

    system: str
    history: list[ChatTurn]
    message: str
    # The model by provider name (``{"openai": "gpt-4o", "openrouter": "openai/gpt-4o"}``), from
    # the prompt version; a provider missing from it uses its configured default, a provider
    # mapped to None is skipped for this request (the model is not offered there).
    models: Mapping[str, str | None] | None = None
    max_output_tokens: int = 1024
    temperature: float | None = None
    # The reply's format (a JSON object, JSON matching a schema); None: plain text.
    output_format: OutputFormat | None = None

    def without_format(self) -> ChatRequest:
        """This request with the format asked for in words instead of the provider's field
        (``chain``: a provider refused the field)."""
        if self.output_format is None:
            return self
        system = f"{self.system}\n\n{self.output_format.instruction()}".lstrip()
        return replace(self, system=system, output_format=None)

    def model_on(self, provider: str) -> str | None:
        return (self.models or {}).get(provider)

    def excludes(self, provider: str) -> bool:
        """True when this request's model is not offered by ``provider``."""
        return self.models is not None and provider in self.models and not self.models[provider]


@dataclass(frozen=True)
class ReplyMeta:
    provider: str
    model: str
    response_id: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class Reply:
    text: str
    meta: ReplyMeta


# What an adapter's ``stream`` yields: ``events.py``'s ``Text`` pieces, then one ``Done``.
StreamEvent = Text | Done


@runtime_checkable
class Provider(Protocol):
    """An adapter. ``stream`` yields zero or more ``Text`` then exactly one ``Done`` (``meta``), or
    raises a ``ProviderError``. It is a generator holding the upstream response open in a
    ``with`` block, so closing the generator closes the HTTP response at once."""

    name: str
    model: str

    def model_for(self, req: ChatRequest) -> str:
        """The model asked for on this provider's wire (``req.models``, or the default)."""
        ...

    def complete(self, req: ChatRequest) -> Reply: ...

    def stream(self, req: ChatRequest, cancel: Cancel | None = None) -> Iterator[StreamEvent]:
        """``cancel``: set from another thread to abandon the call (see ``Cancel``)."""
        ...


# --- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderSettings:
    """Everything the adapters need, as plain values (the app builds it from its config)."""

    openai_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    openai_store: bool = False
    openrouter_api_key: str | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    openrouter_model: str = "openai/gpt-4o-mini"
    openrouter_referer: str | None = None
    openrouter_title: str | None = None
    max_output_tokens: int = 1024  # a ceiling: a request may ask for fewer, never more
    timeout_seconds: float = 60.0  # read (idle) timeout: the longest silence between chunks
    connect_timeout_seconds: float = 5.0
    retry_max_wait_seconds: float = 2.0  # a longer retry-after means: fall back, do not wait
    offline_delay_ms: int = 15  # per offline token, so streaming is visible
    # A streamed body's socket is read at most once per this many seconds after its first
    # read (``paced_reads``); 0 reads whenever data arrives.
    stream_read_pace_seconds: float = 0.0

    def __repr__(self) -> str:  # keys never reach logs or tracebacks
        def state(key: str | None) -> str:
            return "key set" if key else "no key"

        return (
            f"ProviderSettings(openai={self.openai_model!r} {state(self.openai_api_key)}, "
            f"openrouter={self.openrouter_model!r} {state(self.openrouter_api_key)})"
        )


# --- model ids and token budgets ---------------------------------------------------------------


def to_openrouter_model(model: str) -> str:
    """OpenAI id → OpenRouter id: ``gpt-4o-mini`` → ``openai/gpt-4o-mini``. Ids that already
    name an org (``anthropic/claude-haiku-4.5``) stay unchanged."""
    return model if "/" in model else f"openai/{model}"


def to_openai_model(model: str) -> str:
    """OpenRouter id → OpenAI id: ``openai/gpt-4o-mini`` (optionally ``:variant``) →
    ``gpt-4o-mini``. Ids of other orgs stay unchanged (OpenAI will reject them)."""
    if model.startswith("openai/"):
        return model.removeprefix("openai/").split(":", 1)[0]
    return model


def clamp_tokens(req: ChatRequest, settings: ProviderSettings, minimum: int = 1) -> int:
    """The request's token budget, capped by the settings and raised to the provider minimum."""
    return max(minimum, min(req.max_output_tokens, settings.max_output_tokens))
