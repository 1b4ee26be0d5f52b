"""Reads of a streamed body (``base.paced_reads``): paced, the tokens that arrive within one
window come out of one socket read, together, and the first token is not held back; the
connection goes back to the pool reading as usual, and is reused by the next call once the
stream's last event has arrived (``Pacer.drain``)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time

import httpx
import pytest

from app.providers.base import (
    DRAIN_SECONDS,
    StreamEnd,
    TextDelta,
    make_http_client,
    paced_reads,
)
from app.providers.openai import OpenAIProvider
from app.providers.openrouter import OpenRouterProvider
from tests.fake_provider import DEFAULT_OPENAI_KEY, Scenario
from tests.providers.conftest import make_request, text_of
from tests.servers import free_port

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


# --- the connection is reused -------------------------------------------------------------------


@pytest.fixture(scope="module")
def keepalive_fake():
    """The bench's asyncio fake provider: HTTP/1.1 with keep-alive, as the real APIs (the
    suite's threaded fake answers HTTP/1.0 and closes every connection). Its first token takes
    longer than ``DRAIN_SECONDS``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.fake_async", "--port", str(port), "--ttft-ms", "300",
         "--tokens", "5", "--token-delay-ms", "2", "--openai-key", DEFAULT_OPENAI_KEY],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()  # "listening on ..."
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)
    proc.stdout.close()


@pytest.mark.parametrize("pace", [0, 0.025])
def test_a_finished_stream_leaves_its_connection_to_the_next_call(settings, keepalive_fake, pace):
    """The adapter stops at ``response.completed``; the body's closing chunk is read too, so
    the next reply does not open a new connection (a TCP and TLS handshake in production)."""
    settings = dataclasses.replace(
        settings, openai_base_url=f"{keepalive_fake}/v1", stream_read_pace_seconds=pace
    )
    local_ports: list[int] = []

    def record(response):  # httpx's public event hook: the local end of the connection
        sock = response.extensions["network_stream"].get_extra_info("socket")
        local_ports.append(sock.getsockname()[1])

    client = make_http_client(settings)
    client.event_hooks["response"] = [record]
    provider = OpenAIProvider(settings, client)
    try:
        for _ in range(3):
            events = list(provider.stream(make_request()))
            assert isinstance(events[-1], StreamEnd)
    finally:
        client.close()
    assert len(local_ports) == 3
    assert len(set(local_ports)) == 1, local_ports


@pytest.mark.parametrize("endpoint", ["responses", "chat"])
def test_a_provider_slow_to_close_delays_the_end_by_the_drain_bound_only(
    fake_provider, settings, http_client, endpoint
):
    provider = provider_for(endpoint, settings, http_client, pace=0.025)
    fake_provider.script(endpoint, Scenario(deltas=["Hi", " there"], linger_s=3))
    started = time.monotonic()
    events = list(provider.stream(make_request()))
    took = time.monotonic() - started
    assert isinstance(events[-1], StreamEnd)
    assert text_of(events) == "Hi there"
    assert took < DRAIN_SECONDS + 0.5  # not the 3 s it lingers, nor the 1 s read timeout


def test_the_next_call_on_the_connection_is_not_drained(settings, keepalive_fake):
    """Once a stream's last event is in, its connection is back in the pool while the adapter
    still holds the finished stream: a call that takes the connection then reads with its own
    timeout and pace, not the drain's 0.2 s (its first token takes 0.3 s)."""
    settings = dataclasses.replace(
        settings, openai_base_url=f"{keepalive_fake}/v1", stream_read_pace_seconds=0.025
    )
    client = make_http_client(settings)
    provider = OpenAIProvider(settings, client)
    try:
        first = provider.stream(make_request())
        for event in first:
            if isinstance(event, StreamEnd):
                break  # suspended at its last event, not closed yet
        second = list(provider.stream(make_request()))
        assert isinstance(second[-1], StreamEnd)
        first.close()
    finally:
        client.close()


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
