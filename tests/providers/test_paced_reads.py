"""Paced reads of a streamed body (``transport.paced_reads``): the tokens that arrive within one
pace window come out of one socket read, together; the first token is not held back; the
connection goes back to the pool reading as usual; another thread that reads from it is never
paced; and the httpcore internals that pacing and ``Cancel`` reach into are there."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import socket
import threading
import time

import httpx
import pytest

from app.providers.events import Text
from app.providers.openai import OpenAIProvider
from app.providers.openrouter import OpenRouterProvider
from app.providers.transport import READING, Pacer, open_stream, paced_reads, reads_paced
from tests.providers.conftest import make_request
from tools.fake_provider import Scenario

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
    seen = [time.monotonic() for e in provider.stream(make_request()) if isinstance(e, Text)]
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


def test_httpcore_still_has_what_the_transport_reaches_into(fake_provider, settings, http_client):
    """``Cancel`` and ``paced_reads`` use httpcore's internals (app/providers/transport.py), and
    without them they would quietly do nothing (Stop would wait for the model, reads would go
    unpaced): an httpcore that changed them fails here, naming what is gone."""
    where = (
        f"httpcore {importlib.metadata.version('httpcore')} (pinned in pyproject.toml because "
        "app/providers/transport.py relies on it)"
    )
    fake_provider.script("chat", Scenario(deltas=["a ", "b"], ttft_ms=50, token_delay_ms=20))
    reads: list[int] = []
    with http_client.stream(
        "POST",
        f"{settings.openrouter_base_url}/chat/completions",
        json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}],
              "stream": True, "max_tokens": 16},
        headers={"Authorization": f"Bearer {settings.openrouter_api_key}"},
    ) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        stream = response.extensions.get("network_stream")
        assert stream is not None, f"{where}: a response has no 'network_stream' extension"
        assert callable(getattr(type(stream), "read", None)), (
            f"{where}: the network stream's class has no read(max_bytes, timeout)"
        )
        sock = stream.get_extra_info("socket")
        assert isinstance(sock, socket.socket), (
            f"{where}: network_stream.get_extra_info('socket') is {sock!r}, not the socket "
            "that Cancel shuts down"
        )
        read = type(stream).read.__get__(stream)

        def counted(max_bytes: int, timeout: float | None = None) -> bytes:
            reads.append(max_bytes)
            return read(max_bytes, timeout)

        stream.read = counted  # as paced_reads installs its pacing
        try:
            body = response.read()
        finally:
            del stream.read
    assert b"[DONE]" in body
    assert reads, (
        f"{where}: the body was not read through the network stream's read(), looked up on the "
        "instance, so paced_reads cannot pace it"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


def test_once_the_text_is_over_no_read_waits():
    clock = Clock()
    pacer = Pacer(0.025, clock=clock, sleep=clock.sleep)
    pacer.start()
    pacer.after_read()
    pacer.before_read()  # text still comes: the read waits out the window
    assert clock.slept == [0.025]
    pacer.after_read()
    pacer.stop()
    pacer.before_read()  # the text is over: what follows is read at once
    pacer.start()  # and no later start paces again
    pacer.before_read()
    assert clock.slept == [0.025]


@pytest.mark.parametrize("endpoint", ["responses", "chat"])
def test_the_adapters_stop_pacing_when_the_text_is_over(
    fake_provider, settings, http_client, endpoint
):
    """Paced while text comes; from the provider's end of text (``output_text.done``, a
    finish reason) on, the terminal event and usage are read unpaced."""
    provider = provider_for(endpoint, settings, http_client, pace=0.01)
    fake_provider.script(endpoint, Scenario(deltas=["a ", "b ", "c"], token_delay_ms=5))
    req = make_request()
    seen: list[tuple[str, bool, bool]] = []
    with open_stream(
        http_client,
        provider.url,
        json=provider.build_body(req, stream=True),
        headers=provider.headers(stream=True),
        cancel=None,
        status_error=lambda response: AssertionError(response.status_code),
        pace=0.01,
    ) as (response, pacer):
        events = provider._events if endpoint == "responses" else provider._chunks
        for event in events(response, req, pacer):
            seen.append((type(event).__name__, pacer.active, pacer.over))
    assert seen == [("Text", True, False)] * 3 + [("Done", False, True)]


def test_the_bodies_being_read_are_counted(fake_provider, settings, http_client):
    provider = provider_for("responses", settings, http_client, pace=0.01)
    fake_provider.script("responses", Scenario(deltas=["a ", "b"]))
    before = READING.size
    during = [(READING.size, reads_paced()) for _ in provider.stream(make_request())]
    assert set(during) == {(before + 1, True)}
    assert READING.size == before
