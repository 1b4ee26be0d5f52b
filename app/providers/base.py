"""The provider interface: request/reply dataclasses, stream events, and our error family.

Adapters map HTTP statuses, error bodies, in-band stream errors and transport failures onto
``ProviderError`` subclasses; ``chain.py`` decides fallback from the class alone (plus whether
text was already shown). Messages keep the provider's own reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol

import httpx


@dataclass(frozen=True)
class ChatTurn:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class ChatRequest:
    system: str
    history: list[ChatTurn]
    message: str
    model: str | None = None
    max_output_tokens: int = 1024
    temperature: float | None = None


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


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class StreamEnd:
    meta: ReplyMeta


StreamEvent = TextDelta | StreamEnd


class Provider(Protocol):
    name: str
    model: str

    def complete(self, req: ChatRequest) -> Reply: ...

    def stream(self, req: ChatRequest) -> Iterator[StreamEvent]: ...


@dataclass(frozen=True)
class ProviderSettings:
    openai_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    openai_store: bool = False
    openrouter_api_key: str | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    openrouter_model: str = "openai/gpt-4o-mini"
    openrouter_referer: str | None = None
    openrouter_title: str | None = None
    max_output_tokens: int = 1024
    timeout_seconds: float = 60.0
    connect_timeout_seconds: float = 5.0
    retry_max_wait_seconds: float = 2.0
    offline_delay_ms: int = 15


# --- errors ----------------------------------------------------------------------------------


class ProviderError(Exception):
    """A provider call failed. ``partial`` is set by the chain when text was already shown."""

    kind = "error"

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.partial = False


class ProviderAuthError(ProviderError):
    kind = "auth"


class ProviderNotFound(ProviderError):
    """404, e.g. ``model_not_found``: a configuration error of this provider only."""

    kind = "not_found"


class ProviderRateLimited(ProviderError):
    kind = "rate_limited"


class ProviderQuotaExceeded(ProviderError):
    kind = "quota"


class ProviderBadRequest(ProviderError):
    kind = "bad_request"


class ProviderContentPolicy(ProviderError):
    kind = "content_policy"


class ProviderUnavailable(ProviderError):
    kind = "unavailable"


class ProviderTimeout(ProviderError):
    kind = "timeout"


class ProviderConnectionError(ProviderError):
    kind = "connection"


class ProviderMalformed(ProviderError):
    kind = "malformed"


CONTENT_POLICY_CODES = {
    "content_policy_violation",
    "content_filter",
    "moderation_blocked",
    "invalid_prompt",
    "safety",
}


def is_policy_code(code: str | None) -> bool:
    return bool(code) and (code in CONTENT_POLICY_CODES or "safety" in code or "moderation" in code)


def classify_status(
    provider: str,
    status: int,
    message: str,
    *,
    code: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Map an HTTP status (and the body's code) onto our error family."""
    kw = {"status": status, "code": code, "retry_after": retry_after}
    if is_policy_code(code):
        return ProviderContentPolicy(provider, message, **kw)
    if code == "insufficient_quota" or status == 402:
        return ProviderQuotaExceeded(provider, message, **kw)
    if status == 429:
        return ProviderRateLimited(provider, message, **kw)
    if status in (401, 403):
        return ProviderAuthError(provider, message, **kw)
    if status == 404:
        return ProviderNotFound(provider, message, **kw)
    if status in (408, 409) or status >= 500:
        return ProviderUnavailable(provider, message, **kw)
    if 400 <= status < 500:
        return ProviderBadRequest(provider, message, **kw)
    return ProviderMalformed(provider, f"unexpected HTTP status {status}: {message}", **kw)


def classify_code(provider: str, code: str | None, message: str) -> ProviderError:
    """Map an in-band error (no HTTP status) by its code."""
    if is_policy_code(code):
        return ProviderContentPolicy(provider, message, code=code)
    if code == "insufficient_quota":
        return ProviderQuotaExceeded(provider, message, code=code)
    if code in ("rate_limit_exceeded", "tokens", "requests"):
        return ProviderRateLimited(provider, message, code=code)
    if code in ("invalid_request_error", "context_length_exceeded", "invalid_request"):
        return ProviderBadRequest(provider, message, code=code)
    return ProviderUnavailable(provider, message, code=code)


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait: ``retry-after-ms`` first, then ``retry-after`` (seconds or HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def transport_error(provider: str, exc: httpx.HTTPError) -> ProviderError:
    """Map an httpx transport failure. Messages name the failure, never the URL's secrets."""
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(provider, f"timed out ({type(exc).__name__})")
    return ProviderConnectionError(provider, f"connection failed ({type(exc).__name__}: {exc})")


def make_http_client(settings: ProviderSettings) -> httpx.Client:
    """The one pooled client per process. ``trust_env=False``: proxy variables never divert
    provider (or loopback test) traffic."""
    timeout = httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds)
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
    return httpx.Client(timeout=timeout, limits=limits, trust_env=False)
