"""The provider error family, and the helpers that map an HTTP answer or an httpx failure onto it.

Each adapter maps HTTP statuses, error bodies, in-band stream errors and transport failures onto
one ``ProviderError`` subclass; ``chain.py`` decides retry and fallback from the class alone,
plus whether text was already shown. Error messages keep the provider's own reason (OpenAI
``error.message``; OpenRouter ``error.message`` plus ``metadata.raw``). Imports httpx only: the
lowest module of the package.

Error classes (docs/providers.md, "Errors and retries"; fallback: "Provider fallback policy"):

========================  =======================================================================
class                     raised for
========================  =======================================================================
ProviderAuthError         401; 403 without moderation/guardrail metadata
ProviderModelNotFound     404 (``model_not_found``, or a base URL without the endpoint)
ProviderRateLimited       429 rate limits, in-band ``rate_limit_exceeded``; ``retry_after`` set
ProviderQuotaExceeded     OpenAI ``insufficient_quota`` (429 or in-band), OpenRouter 402
ProviderBadRequest        400/413/422 and other 4xx, context length, invalid input
ProviderContentPolicy     OpenAI content-policy/moderation/safety codes and refusals,
                          OpenRouter 403 moderation or guardrail, ``content_policy_violation``
ProviderUnavailable       408, 409, 5xx/52x/529, ``server_error`` and unknown in-band errors
ProviderTimeout           httpx timeouts (``code`` is ``connect_timeout`` or ``read_timeout``)
ProviderConnectionError   connect errors; a dropped connection (``RemoteProtocolError``, ...)
ProviderMalformed         unparseable JSON, wrong content type, EOF without a terminal event,
                          a 200 body without the expected structure
========================  =======================================================================

Decision on 404 ``model_not_found``: it is a configuration error of *that* provider (its model
id or base URL is wrong), and each provider's model is configured independently, so the chain
falls back exactly as for an auth error and logs it at ERROR level. ``ProviderModelNotFound``
subclasses ``ProviderAuthError`` ("this provider is misconfigured"), so code handling auth errors
handles it too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class ProviderError(Exception):
    """A provider call failed.

    ``message`` is the provider's own reason. ``request_id`` is the provider's id for the call
    (``x-request-id`` / ``X-Generation-Id``), for logs. ``retryable`` is the provider's hint
    (``x-should-retry``), None when absent. The chain sets ``partial`` when text had already been
    shown and fills ``attempts`` with what it tried before giving up."""

    kind = "error"

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.request_id = request_id
        self.retryable = retryable
        self.partial = False
        self.attempts: list[Any] = []

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, status={self.status}, "
            f"code={self.code!r}, message={self.message!r})"
        )


class ProviderAuthError(ProviderError):
    kind = "auth"


class ProviderModelNotFound(ProviderAuthError):
    kind = "model_not_found"


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


# --- mapping answers and failures ---------------------------------------------------------------

POLICY_CODES = frozenset(
    {
        "content_policy_violation",
        "content_filter",
        "moderation_blocked",
        "invalid_prompt",  # OpenAI: "Invalid prompt: ... flagged as potentially violating ..."
        "flagged",
        "guardrail",
    }
)
CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})


def is_policy_code(code: str | None) -> bool:
    if not code:
        return False
    code = code.lower()
    return code in POLICY_CODES or any(w in code for w in ("safety", "moderation", "policy"))


def parse_retry_after(headers: Mapping[str, str] | httpx.Headers) -> float | None:
    """Seconds to wait: ``retry-after-ms`` (milliseconds) first, then ``retry-after`` as seconds
    or as an HTTP date, as the official SDK reads them. None when absent or unreadable."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000
            if math.isfinite(value):
                return max(0.0, value)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
        return max(0.0, value) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def should_retry_hint(headers: Mapping[str, str] | httpx.Headers) -> bool | None:
    value = (headers.get("x-should-retry") or "").strip().lower()
    return {"true": True, "false": False}.get(value)


def transport_error(provider: str, exc: httpx.HTTPError) -> ProviderError:
    """Map an httpx transport failure. The message names the failure, never a header or URL."""
    name = type(exc).__name__
    detail = str(exc) or name
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return ProviderTimeout(provider, f"connect timed out ({name})", code="connect_timeout")
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(
            provider, f"no data within the read timeout ({name})", code="read_timeout"
        )
    if isinstance(exc, httpx.ConnectError):
        return ProviderConnectionError(provider, f"could not connect: {detail}", code="connect")
    if isinstance(exc, httpx.LocalProtocolError):
        return ProviderConnectionError(
            provider, f"could not send the request: {detail}", code="local_protocol"
        )
    if isinstance(exc, httpx.TransportError):
        return ProviderConnectionError(provider, f"connection dropped: {detail}", code="dropped")
    return ProviderConnectionError(provider, f"HTTP failure: {detail}", code=name)


def short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def error_object(response: httpx.Response) -> tuple[dict[str, Any], str]:
    """A non-2xx response (body already read): its ``error`` object (both providers nest the
    reason there; a bare string becomes ``{"message": ...}``) and a reason for when it has none."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    err = as_dict(body).get("error")
    if not isinstance(err, dict):
        err = {"message": err} if isinstance(err, str) else {}
    detail = short(response.text) if response.text else "no error body"
    return err, f"HTTP {response.status_code}: {detail}"
