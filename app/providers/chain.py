"""Provider registry and the fallback policy, decided here only (docs/providers.md, "Provider
fallback policy"; docs/providers.md, "Errors and retries").

The **commit point** is the first non-empty ``Text`` (``events.py``) handed to the caller.
Before it, each failure is handled by its class (adapters do the mapping, see ``errors.py``):

=================================================  ==============================================
failure before the commit point                    action
=================================================  ==============================================
connection refused/reset, dropped before any text  one short retry, then the next provider
connect timeout                                    one short retry, then the next provider
read timeout (nothing within the idle timeout)     next provider at once (a retry would double
                                                   the wait, and the primary may still bill it)
unavailable: 408, 409, 5xx/52x, ``server_error``   one short retry, then the next provider
rate limited, retry-after ≤ retry_max_wait         wait retry-after, one retry, then the next
rate limited, longer or no retry-after             next provider at once (``x-should-retry:
                                                   true`` without retry-after: one short retry)
quota (``insufficient_quota``, OpenRouter 402)     next provider at once, never retried; ERROR log
malformed body/event, EOF without terminal event   next provider at once
auth 401/403, model not found 404                  next provider at once; ERROR log (config)
bad request 400/413/422, content policy            raised at once: no fallback (the secondary
                                                   would reject it too / would evade the policy)
bad request or 404 for a request with an output    the same provider once more at once, the
format (``FORMAT_REFUSALS``)                       format asked for in words instead
=================================================  ==============================================

In-band errors (OpenAI ``error`` / ``response.failed``, OpenRouter error chunks) are classified by
their code into the same classes, so they follow the same rows. A provider's
``x-should-retry: false`` forbids the same-provider retry. The retry waits ``retry_after`` when the
provider gave a short one, else ``retry_delay`` (0.25 s); ``sleep`` is injectable for tests.

**After the commit point** nothing is retried or replayed: the error is raised with
``partial=True`` and the caller keeps the text that arrived. When every provider failed, the last
error is raised (its message is that provider's own reason), with ``attempts`` listing every
failure. Providers without a key are not in the chain; with no key at all the chain is the offline
demo model alone (``is_offline``), and offline is never mixed with a real provider.

Logs carry provider, class, status, code, request id and the provider's reason, never keys or
message bodies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import httpx

from app.providers.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderContentPolicy,
    ProviderError,
    ProviderMalformed,
    ProviderModelNotFound,
    ProviderQuotaExceeded,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from app.providers.events import Committed, Done, Text
from app.providers.offline import OfflineProvider
from app.providers.openai import OpenAIProvider
from app.providers.openrouter import OpenRouterProvider
from app.providers.transport import Cancel, make_http_client
from app.providers.types import ChatRequest, Provider, ProviderSettings, Reply

__all__ = [
    "PROVIDERS",
    "AttemptRecord",
    "ProviderChain",
    "build_chain",
    "make_http_client",
]

log = logging.getLogger(__name__)

# Registry, in fallback order. Each class says whether the settings configure it.
PROVIDERS: dict[str, type] = {"openai": OpenAIProvider, "openrouter": OpenRouterProvider}

DEFAULT_RETRY_DELAY = 0.25
NO_FALLBACK = (ProviderBadRequest, ProviderContentPolicy)
# A request with an output format refused so is sent once more without it (``_refused_format``).
FORMAT_REFUSALS = (ProviderBadRequest, ProviderModelNotFound)
ALERT = (ProviderAuthError, ProviderQuotaExceeded)  # need a human: logged at ERROR


@dataclass(frozen=True)
class AttemptRecord:
    """One failed attempt: what failed and what the chain did. Not stored with the reply: the
    chain logs each failure as it happens and the list once every provider failed (``_give_up``);
    callers find the list on ``Done.attempts`` and ``ProviderError.attempts``."""

    provider: str
    error: str  # class name, e.g. "ProviderUnavailable"
    kind: str  # short class tag, e.g. "unavailable"
    status: int | None
    code: str | None
    request_id: str | None
    message: str
    action: str  # "retry" | "fallback" | "give_up" | "raise" | "partial" | "without_format"


class ProviderChain:
    def __init__(
        self,
        adapters: list[Provider],
        *,
        retry_max_wait: float = 2.0,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        sleep: Callable[[float], None] = time.sleep,
        observe: Callable[[AttemptRecord], None] | None = None,
    ) -> None:
        self.adapters = list(adapters)
        self.retry_max_wait = retry_max_wait
        self.retry_delay = retry_delay
        self.sleep = sleep
        self.observe = observe  # told of every failed attempt (metrics), never decides

    @property
    def providers(self) -> list[str]:
        """Provider names in fallback order, e.g. ``["openai", "openrouter"]``."""
        return [adapter.name for adapter in self.adapters]

    @property
    def is_offline(self) -> bool:
        return self.providers == [OfflineProvider.name]

    # -- policy ---------------------------------------------------------------------------------

    def delay_before_retry(self, exc: ProviderError) -> float | None:
        """Seconds to wait before the one retry on the same provider, or None: move on."""
        if exc.retryable is False:
            return None
        if isinstance(exc, ProviderRateLimited):
            if exc.retry_after is None:
                return self.retry_delay if exc.retryable else None
            return exc.retry_after if exc.retry_after <= self.retry_max_wait else None
        if isinstance(exc, ProviderTimeout):
            return self.retry_delay if exc.code == "connect_timeout" else None
        if isinstance(exc, ProviderConnectionError | ProviderUnavailable):
            if exc.retry_after is None:
                return self.retry_delay
            return exc.retry_after if exc.retry_after <= self.retry_max_wait else None
        return None

    def _failed(
        self, exc: ProviderError, *, attempt: int, attempts: list[AttemptRecord], more: bool
    ) -> float | None:
        """Record and log a failure before the commit point; raise it when it must not fall
        back; return the delay before a retry on the same provider, or None to move on.
        ``more``: another provider follows this one."""
        delay = self.delay_before_retry(exc) if attempt == 1 else None
        if isinstance(exc, NO_FALLBACK):
            action = "raise"
        elif delay is not None:
            action = "retry"
        else:
            action = "fallback" if more else "give_up"
        self._record(attempts, exc, action)
        level = logging.ERROR if isinstance(exc, ALERT) else logging.WARNING
        log.log(
            level,
            "provider %s attempt %d failed before any text (%s): %s status=%s code=%s "
            "request_id=%s -> %s: %s",
            exc.provider,
            attempt,
            exc.kind,
            type(exc).__name__,
            exc.status,
            exc.code,
            exc.request_id,
            action,
            exc.message,
        )
        if action == "raise":
            exc.attempts = list(attempts)
            raise exc
        return delay

    def _refused_format(
        self, exc: ProviderError, req: ChatRequest, attempts: list[AttemptRecord]
    ) -> bool:
        """True (recorded, logged) when a provider refused a request that carries an output
        format: a 400-class refusal or "no endpoint for these parameters" (OpenRouter's
        ``require_parameters``). The chain then retries that provider once at once with the
        format asked for in words (``ChatRequest.without_format``); the reply is checked
        against the format either way (docs/formats.md, "When a provider refuses the format")."""
        if req.output_format is None or not isinstance(exc, FORMAT_REFUSALS):
            return False
        self._record(attempts, exc, "without_format")
        log.warning(
            "provider %s refused the output format (%s status=%s code=%s): retrying without it: %s",
            exc.provider,
            type(exc).__name__,
            exc.status,
            exc.code,
            exc.message,
        )
        return True

    def _record(self, attempts: list[AttemptRecord], exc: ProviderError, action: str) -> None:
        attempts.append(record(exc, action))
        if self.observe is not None:
            self.observe(attempts[-1])

    def _give_up(self, last: ProviderError | None, attempts: list[AttemptRecord]) -> ProviderError:
        if last is None:
            return ProviderError("chain", "no configured provider offers this model")
        last.attempts = list(attempts)
        log.error(
            "every provider failed (%s); last: %s: %s",
            ", ".join(f"{a.provider}:{a.kind}" for a in attempts),
            last.provider,
            last.message,
        )
        return last

    def _adapters_for(self, req: ChatRequest) -> list[Provider]:
        """The adapters that offer the request's model, in fallback order."""
        return [adapter for adapter in self.adapters if not req.excludes(adapter.name)]

    # -- calls ----------------------------------------------------------------------------------

    def stream(
        self, req: ChatRequest, cancel: Cancel | None = None
    ) -> Iterator[Committed | Text | Done]:
        """Yield one ``Committed`` and ``Text``s, then the adapter's ``Done`` with ``fallback``
        and ``attempts`` filled in (no text: no ``Committed``); or raise the ``ProviderError``
        (``partial=True`` when text had been yielded). Closing this generator closes the
        upstream HTTP response at once. A ``cancel`` set from another thread ends the stream
        quietly, even while a read waits on a silent model: no retry, no fallback, no end."""
        attempts: list[AttemptRecord] = []
        last: ProviderError | None = None
        adapters = self._adapters_for(req)
        for index, adapter in enumerate(adapters):
            attempt = 0
            current = req  # without its format once this provider refused it
            while True:
                if cancel is not None and cancel.cancelled:
                    return
                attempt += 1
                emitted = False
                events = adapter.stream(current, cancel)
                try:
                    for event in events:
                        if isinstance(event, Text):
                            if event.text:  # empty deltas are not a commit point
                                if not emitted:
                                    yield Committed(
                                        adapter.name, adapter.model_for(current), index > 0
                                    )
                                emitted = True
                                yield event
                        elif isinstance(event, Done):
                            yield replace(event, fallback=index > 0, attempts=tuple(attempts))
                            return
                        else:  # a kind the chain has no rule for: passed on (also before the
                            # commit point: a kind that must not outlive a fallback goes here)
                            yield event
                    raise ProviderMalformed(adapter.name, "the stream ended without a result")
                except ProviderError as exc:
                    if cancel is not None and cancel.cancelled:
                        log.info("provider %s call cancelled (%s)", adapter.name, exc.code)
                        return
                    if emitted:
                        exc.partial = True
                        self._record(attempts, exc, "partial")
                        exc.attempts = list(attempts)
                        log.warning(
                            "provider %s failed after text was shown (no fallback): %s "
                            "status=%s code=%s request_id=%s: %s",
                            exc.provider,
                            type(exc).__name__,
                            exc.status,
                            exc.code,
                            exc.request_id,
                            exc.message,
                        )
                        raise
                    last = exc
                    if self._refused_format(exc, current, attempts):
                        current, attempt, delay = current.without_format(), 0, 0.0
                    else:
                        delay = self._failed(
                            exc, attempt=attempt, attempts=attempts, more=index + 1 < len(adapters)
                        )
                finally:
                    events.close()  # closes the upstream response (Stop, error or done)
                if delay is None:
                    break
                self.sleep(delay)
        raise self._give_up(last, attempts)

    def complete(self, req: ChatRequest) -> tuple[Reply, Done]:
        """One non-streamed reply and its ``Done`` (``.fallback``, ``.meta``,
        ``.attempts``). Every failure is "before the commit point" here."""
        attempts: list[AttemptRecord] = []
        last: ProviderError | None = None
        adapters = self._adapters_for(req)
        for index, adapter in enumerate(adapters):
            attempt = 0
            current = req
            while True:
                attempt += 1
                try:
                    reply = adapter.complete(current)
                except ProviderError as exc:
                    last = exc
                    if self._refused_format(exc, current, attempts):
                        current, attempt, delay = current.without_format(), 0, 0.0
                    else:
                        delay = self._failed(
                            exc, attempt=attempt, attempts=attempts, more=index + 1 < len(adapters)
                        )
                else:
                    return reply, Done(reply.meta, index > 0, tuple(attempts))
                if delay is None:
                    break
                self.sleep(delay)
        raise self._give_up(last, attempts)


def record(exc: ProviderError, action: str) -> AttemptRecord:
    return AttemptRecord(
        provider=exc.provider,
        error=type(exc).__name__,
        kind=exc.kind,
        status=exc.status,
        code=exc.code,
        request_id=exc.request_id,
        message=exc.message,
        action=action,
    )


def build_chain(
    settings: ProviderSettings,
    client: httpx.Client,
    *,
    sleep: Callable[[float], None] = time.sleep,
    observe: Callable[[AttemptRecord], None] | None = None,
) -> ProviderChain:
    """The configured providers in registry order (a provider without a key is skipped); the
    offline demo model alone when no provider has a key. ``observe`` is told of every failed
    attempt (``app/metrics.py`` counts them)."""
    adapters: list[Provider] = [
        cls(settings, client) for cls in PROVIDERS.values() if cls.is_configured(settings)
    ]
    if not adapters:
        adapters = [OfflineProvider(settings, sleep=sleep)]
    return ProviderChain(
        adapters, retry_max_wait=settings.retry_max_wait_seconds, sleep=sleep, observe=observe
    )
