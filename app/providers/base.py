"""The provider interface: request/reply dataclasses, stream events, settings, the error family.

Boundaries: this package knows the standard library, httpx and httpx-sse only (no Flask). Each
adapter maps HTTP statuses, error bodies, in-band stream errors and transport failures onto one
``ProviderError`` subclass; ``chain.py`` decides retry and fallback from the class alone, plus
whether text was already shown. Error messages keep the provider's own reason (OpenAI
``error.message``; OpenRouter ``error.message`` plus ``metadata.raw``).

Error classes (docs/providers.md, "Errors and retries"; fallback: ARCHITECTURE.md):

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
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol, runtime_checkable

import httpx

# --- requests, replies, stream events -----------------------------------------------------------


@dataclass(frozen=True)
class ChatTurn:
    role: Literal["user", "assistant"]
    content: str


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


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class StreamEnd:
    meta: ReplyMeta


StreamEvent = TextDelta | StreamEnd


class Cancel:
    """Abandons one provider call from another thread (Stop, a client that went away).

    httpx's sync API cannot interrupt a read that is waiting on a silent model, so ``cancel()``
    shuts down the socket of the response being read (registered with ``watching``): the read
    wakes at once with an end of stream, the adapter raises, and the chain, seeing ``cancelled``,
    tries nothing more. The lock makes sure a socket is never shut down after ``watching`` has
    ended, when its connection may already serve another request from the pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._socket: socket.socket | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._socket is not None:
                _shut(self._socket)

    @contextmanager
    def watching(self, response: httpx.Response) -> Iterator[None]:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock
            if self._cancelled and sock is not None:  # cancelled while the headers were awaited
                _shut(sock)
        try:
            yield
        finally:
            with self._lock:
                self._socket = None


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed: nothing is being read from it
        pass


class Pacer:
    """Paces the socket reads of one streamed body (``paced_reads``) once ``start`` is called.

    A model sends each token in its own small write, a few milliseconds apart. Read as they
    come, every token costs a blocking socket read: a wait, a wake-up, a ``recv``, about
    0.1 ms of CPU each on our machines, the largest single cost of relaying a reply
    (docs/benchmarks.md, section 15). The relay joins the text of one
    ``CHAT_STREAM_COALESCE_MS`` window into one event anyway, so waiting that long before the
    next read delays nothing a reader sees, and one read then takes every token of the window
    from the socket buffer. The adapters call ``start`` at their first text: what comes before
    it (the stream's opening events, the wait for the model) is read at once, so the first
    token is never held back; the last one is, by at most ``pace``. A ``Cancel`` still ends the
    body: it shuts the socket, which the next read finds closed."""

    def __init__(self, pace: float) -> None:
        self.pace = pace
        self.active = False
        self._last: float | None = None

    def start(self) -> None:
        self.active = self.pace > 0

    def before_read(self) -> None:
        if self.active and self._last is not None:
            wait = self._last + self.pace - time.monotonic()
            if wait > 0:
                time.sleep(wait)

    def after_read(self) -> None:
        self._last = time.monotonic()


@contextmanager
def paced_reads(response: httpx.Response, pace: float) -> Iterator[Pacer]:
    """A ``Pacer`` for the body of ``response``, installed on its connection's reads.

    httpx has no setting for this. For a response that is not an upgrade, httpcore's
    ``network_stream`` extension is the very stream its HTTP/1.1 connection reads the body
    from, with ``read(max_bytes, timeout)``; the pacing is installed on that object for this
    body only. It applies only to the thread (greenlet) reading this body: when the body ends,
    httpcore may hand the connection to the next request before the pacing is removed (its pool
    lock can switch greenlets), and that request reads as usual."""
    pacer = Pacer(pace)
    stream = response.extensions.get("network_stream")
    if pace <= 0 or stream is None or not callable(getattr(type(stream), "read", None)):
        yield pacer
        return
    read = type(stream).read.__get__(stream)  # the class's own method, never another wrapper
    owner = threading.get_ident()  # the thread (greenlet, under gevent) reading this body

    def paced(max_bytes: int, timeout: float | None = None) -> bytes:
        if threading.get_ident() != owner:
            # The body is read and its connection already serves the next request (httpcore
            # may hand it over before ``uninstall`` runs): that request reads as usual.
            return read(max_bytes, timeout)
        pacer.before_read()
        data = read(max_bytes, timeout)
        pacer.after_read()
        return data

    def uninstall() -> None:
        if stream.__dict__.get("read") is paced:  # ours, not the next request's
            del stream.read  # the class's own method again

    stream.read = paced
    try:
        yield pacer
    finally:
        uninstall()


@contextmanager
def open_stream(
    client: httpx.Client,
    url: str,
    *,
    json: dict[str, Any],
    headers: dict[str, str],
    cancel: Cancel | None,
    status_error: Callable[[httpx.Response], ProviderError],
    pace: float = 0.0,
) -> Iterator[tuple[httpx.Response, Pacer]]:
    """POST a streamed request, for the adapters' ``stream``: a non-2xx answer is read and
    raised as ``status_error(response)``; a 2xx one is read by the caller while ``cancel``
    watches it, its socket at most once per ``pace`` seconds once the caller starts the
    ``Pacer`` (``paced_reads``). httpx errors are left to the caller (``transport_error``)."""
    with client.stream("POST", url, json=json, headers=headers) as response:
        if not response.is_success:
            response.read()
            raise status_error(response)
        with paced_reads(response, pace) as pacer:
            if cancel is None:
                yield response, pacer
            else:
                with cancel.watching(response):
                    yield response, pacer


@runtime_checkable
class Provider(Protocol):
    """An adapter. ``stream`` yields zero or more ``TextDelta`` then exactly one ``StreamEnd``, or
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


# --- settings and the shared client -------------------------------------------------------------


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


# Enough connections for ~200 concurrent streams per process, with headroom.
POOL_MAX_CONNECTIONS = 400
POOL_MAX_KEEPALIVE = 100


def make_http_client(settings: ProviderSettings) -> httpx.Client:
    """The one pooled client per process, shared by every adapter (httpx.Client is thread-safe).

    ``read`` is an idle timeout (per chunk), not a total: long streams are fine while bytes flow.
    Waiting for a free pooled connection is bounded by the connect timeout. ``trust_env=False``:
    proxy environment variables never divert provider or loopback (test) traffic."""
    timeout = httpx.Timeout(
        connect=settings.connect_timeout_seconds,
        read=settings.timeout_seconds,
        write=settings.timeout_seconds,
        pool=settings.connect_timeout_seconds,
    )
    limits = httpx.Limits(
        max_connections=POOL_MAX_CONNECTIONS,
        max_keepalive_connections=POOL_MAX_KEEPALIVE,
        keepalive_expiry=30.0,
    )
    return httpx.Client(timeout=timeout, limits=limits, trust_env=False, follow_redirects=False)


# --- errors -------------------------------------------------------------------------------------


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


# --- helpers shared by the adapters ------------------------------------------------------------

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
