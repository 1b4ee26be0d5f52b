"""Provider registry and the fallback policy (shared/PROTOCOLS.md §E.2), decided here only.

The commit point is the first non-empty text delta handed to the caller. Before it:

| failure                                             | action                                   |
|-----------------------------------------------------|------------------------------------------|
| connection error, 5xx/408/409 ("unavailable")       | one short retry, then the next provider  |
| 429 rate limit with retry-after ≤ the max wait      | wait that long, one retry, then the next |
| 429 with a longer or no retry-after                 | next provider at once                    |
| quota (``insufficient_quota``, OpenRouter 402)      | next provider at once (never retried)    |
| timeout (no data within the read timeout)           | next provider at once                    |
| malformed body/event, EOF without a terminal event  | next provider at once                    |
| in-band ``error`` / ``response.failed`` events      | by their code, as the rows above         |
| 401/403 auth, 404 model not found                   | next provider; logged at ERROR (config)  |
| 400/413/422 bad request, content policy/moderation  | no fallback: raised as is                |

After the commit point nothing is retried or replayed: the error is raised with
``partial=True`` and the caller keeps the text that arrived. When every provider failed, the last
error is raised. Providers without a key are not in the chain; with none, only ``offline`` is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field

import httpx

from app.providers.base import (
    ChatRequest,
    Provider,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderContentPolicy,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderSettings,
    ProviderUnavailable,
    Reply,
    ReplyMeta,
    StreamEnd,
    TextDelta,
    make_http_client,
)
from app.providers.offline import OfflineProvider
from app.providers.openai import OpenAIProvider
from app.providers.openrouter import OpenRouterProvider

log = logging.getLogger(__name__)

# Registry: name -> (adapter class, settings attribute holding its key), in fallback order.
PROVIDERS: dict[str, tuple[type, str]] = {
    "openai": (OpenAIProvider, "openai_api_key"),
    "openrouter": (OpenRouterProvider, "openrouter_api_key"),
}
DEFAULT_RETRY_DELAY = 0.25
NO_FALLBACK = (ProviderBadRequest, ProviderContentPolicy)
LOUD = (ProviderAuthError, ProviderNotFound)

__all__ = ["ChainEnd", "ProviderChain", "build_chain", "make_http_client"]


@dataclass(frozen=True)
class Attempt:
    provider: str
    kind: str
    status: int | None
    message: str


@dataclass(frozen=True)
class ChainEnd:
    """Last event of a successful chain stream: who answered, and whether it was a fallback."""

    meta: ReplyMeta
    fallback: bool
    attempts: list[Attempt] = field(default_factory=list)


class ProviderChain:
    def __init__(
        self,
        providers: list[Provider],
        *,
        retry_max_wait: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._providers = providers
        self.retry_max_wait = retry_max_wait
        self.sleep = sleep

    @property
    def providers(self) -> list[str]:
        return [p.name for p in self._providers]

    @property
    def is_offline(self) -> bool:
        return self.providers == ["offline"]

    def _retry_delay(self, exc: ProviderError) -> float | None:
        """Seconds to wait before the one retry on the same provider, or None: move on."""
        if isinstance(exc, ProviderRateLimited):
            if exc.retry_after is not None and exc.retry_after <= self.retry_max_wait:
                return exc.retry_after
            return None
        if isinstance(exc, ProviderUnavailable | ProviderConnectionError):
            if exc.retry_after is not None:
                return exc.retry_after if exc.retry_after <= self.retry_max_wait else None
            return DEFAULT_RETRY_DELAY
        return None

    def _after_failure(self, exc: ProviderError, attempts: list[Attempt]) -> None:
        attempts.append(Attempt(exc.provider, exc.kind, exc.status, exc.message))
        if isinstance(exc, NO_FALLBACK):
            raise exc
        level = logging.ERROR if isinstance(exc, LOUD) else logging.WARNING
        log.log(
            level,
            "provider %s failed before any text (%s, status=%s): %s",
            exc.provider,
            exc.kind,
            exc.status,
            exc.message,
        )

    def stream(self, req: ChatRequest) -> Iterator[TextDelta | ChainEnd]:
        attempts: list[Attempt] = []
        last: ProviderError | None = None
        for index, provider in enumerate(self._providers):
            retried = False
            while True:
                emitted = False
                try:
                    with closing(provider.stream(req)) as events:
                        for event in events:
                            if isinstance(event, TextDelta):
                                if event.text:
                                    emitted = True
                                    yield event
                            elif isinstance(event, StreamEnd):
                                yield ChainEnd(event.meta, index > 0, attempts)
                                return
                    raise ProviderError(provider.name, "the stream ended without a result")
                except ProviderError as exc:
                    if emitted:
                        exc.partial = True
                        raise
                    self._after_failure(exc, attempts)
                    last = exc
                    delay = None if retried else self._retry_delay(exc)
                    if delay is None:
                        break
                    retried = True
                    self.sleep(delay)
        raise last or ProviderError("chain", "no provider is configured")

    def complete(self, req: ChatRequest) -> tuple[Reply, ChainEnd]:
        attempts: list[Attempt] = []
        last: ProviderError | None = None
        for index, provider in enumerate(self._providers):
            retried = False
            while True:
                try:
                    reply = provider.complete(req)
                    return reply, ChainEnd(reply.meta, index > 0, attempts)
                except ProviderError as exc:
                    self._after_failure(exc, attempts)
                    last = exc
                    delay = None if retried else self._retry_delay(exc)
                    if delay is None:
                        break
                    retried = True
                    self.sleep(delay)
        raise last or ProviderError("chain", "no provider is configured")


def build_chain(
    settings: ProviderSettings,
    client: httpx.Client,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> ProviderChain:
    providers: list[Provider] = [
        cls(settings, client) for cls, key in PROVIDERS.values() if getattr(settings, key)
    ]
    if not providers:
        providers = [OfflineProvider(settings)]
    return ProviderChain(providers, retry_max_wait=settings.retry_max_wait_seconds, sleep=sleep)
