"""Paced reads of a streamed body (``base.paced_reads``): the tokens that arrive within one pace
window come out of one socket read, together; the first token is not held back; the connection
goes back to the pool reading as usual; and another thread that reads from it is never paced."""

from __future__ import annotations

import dataclasses
import threading
import time

import httpx
import pytest

from app.providers.base import TextDelta, paced_reads
from app.providers.openai import OpenAIProvider
from app.providers.openrouter import OpenRouterProvider
from tests.fake_provider import Scenario
from tests.providers.conftest import make_request

TOKENS = 12
TOKEN_GAP_MS = 30
TTFT_MS = 150


def provider_for(endpoint, settings, http_client, pace):
    settings = dataclasses.replace(settings, stream_read_pace_seconds=pace)
    if endpoint == "responses":
        return OpenAIProvider(settings, http_client)
    return OpenRouterProvider(settings, http_client)


def arrivals(fake_provider, provider, endpoint) -> tuple[float, list[float]]:
    """When the request was sent, and when each token came out of the adapter."""
    fake_provider.script(
        endpoint,
        Scenario(
            deltas=[f"w{i} " for i in range(TOKENS)],
            ttft_ms=TTFT_MS,
            token_delay_ms=TOKEN_GAP_MS,
        ),
    )
    sent = time.monotonic()
    seen = [time.monotonic() for e in provider.stream(make_request()) if isinstance(e, TextDelta)]
    assert len(seen) == TOKENS
    return sent, seen


def bursts(seen: list[float]) -> int:
    """Groups of tokens that came out together (less than 10 ms apart)."""
    return 1 + sum(1 for a, b in zip(seen, seen[1:], strict=False) if b - a > 0.010)


@pytest.mark.parametrize("endpoint", ["responses", "chat"])
def test_unpaced_every_token_is_its_own_read(fake_provider, settings, http_client, endpoint):
    provider = provider_for(endpoint, settings, http_client, pace=0)
    _, seen = arrivals(fake_provider, provider, endpoint)
    assert bursts(seen) >= TOKENS - 2  # a late reader may find two tokens waiting, rarely more


@pytest.mark.parametrize("endpoint", ["responses", "chat"])
def test_paced_the_tokens_of_a_window_come_in_one_read(
    fake_provider, settings, http_client, endpoint
):
    provider = provider_for(endpoint, settings, http_client, pace=0.1)
    sent, seen = arrivals(fake_provider, provider, endpoint)
    # 12 tokens over 330 ms, read at most every 100 ms after the first: about 5 reads.
    assert bursts(seen) <= 6
    # The first token waits on the model, not on the pace.
    assert seen[0] - sent < TTFT_MS / 1000 + 0.09


def test_the_connection_reads_unpaced_after_a_paced_body(fake_provider, settings, http_client):
    paced = provider_for("responses", settings, http_client, pace=0.1)
    arrivals(fake_provider, paced, "responses")
    unpaced = provider_for("responses", settings, http_client, pace=0)
    _, seen = arrivals(fake_provider, unpaced, "responses")  # the same pooled connection
    assert bursts(seen) >= TOKENS - 2


class InstantStream:
    """Stands in for httpcore's network stream: ``read`` returns at once."""

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return b"x"


def test_pacing_applies_only_to_the_thread_reading_the_body():
    """httpcore can give the connection to the next request (another thread or greenlet) a
    moment before the pacing is removed: that request's reads are not paced."""
    stream = InstantStream()
    response = httpx.Response(200, extensions={"network_stream": stream})
    foreign: list[float] = []
    with paced_reads(response, 0.2) as pacer:
        pacer.start()
        stream.read(10)  # the body's first read after the first text
        started = time.monotonic()
        stream.read(10)  # paced: waits out the window
        own = time.monotonic() - started

        def other_request():
            begun = time.monotonic()
            stream.read(10)
            stream.read(10)
            foreign.append(time.monotonic() - begun)

        thread = threading.Thread(target=other_request)
        thread.start()
        thread.join()
    assert own >= 0.15
    assert foreign[0] < 0.1
    assert "read" not in vars(stream)  # removed with the body
