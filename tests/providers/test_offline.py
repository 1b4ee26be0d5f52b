"""The offline demo model: deterministic, honest about what it is, streamed word by word."""

from __future__ import annotations

from app.providers.events import Done, Text
from app.providers.offline import OfflineProvider
from app.providers.types import ChatRequest, ChatTurn, ProviderSettings


def request(message: str) -> ChatRequest:
    return ChatRequest(system="Be kind.", history=[ChatTurn("user", "hi")], message=message)


def test_streams_word_by_word_and_ends_once():
    events = list(OfflineProvider(ProviderSettings(offline_delay_ms=0)).stream(request("Hello")))
    deltas, end = events[:-1], events[-1]
    assert len(deltas) > 20 and all(isinstance(d, Text) for d in deltas)
    assert isinstance(end, Done)
    text = "".join(d.text for d in deltas)
    assert (end.meta.provider, end.meta.model, end.meta.finish_reason) == (
        "offline",
        "offline-demo",
        "stop",
    )
    assert end.meta.tokens_out == len(text.split())
    assert end.meta.tokens_in == 4  # words of system, history and message


def test_says_what_it_is_and_how_to_configure_a_real_model():
    reply = OfflineProvider(ProviderSettings()).complete(request("What's up?"))
    assert reply.text.startswith("**Offline demo model.**")
    assert "`OPENAI_API_KEY`" in reply.text and "`OPENROUTER_API_KEY`" in reply.text
    assert "`.env`" in reply.text
    assert "> What's up?" in reply.text


def test_is_deterministic_and_matches_the_stream():
    provider = OfflineProvider(ProviderSettings(offline_delay_ms=0))
    streamed = "".join(e.text for e in provider.stream(request("x")) if isinstance(e, Text))
    assert streamed == provider.complete(request("x")).text == provider.complete(request("x")).text


def test_long_messages_are_echoed_truncated_on_one_line():
    message = "line one\n\nline two " + "word " * 100
    text = OfflineProvider(ProviderSettings()).complete(request(message)).text
    quote = next(line for line in text.splitlines() if line.startswith("> "))
    assert quote.startswith("> line one line two word") and quote.endswith("…")
    assert len(quote) <= 2 + 120


def test_waits_between_tokens():
    slept: list[float] = []
    provider = OfflineProvider(ProviderSettings(offline_delay_ms=15), sleep=slept.append)
    events = list(provider.stream(request("hi")))
    assert slept and set(slept) == {0.015}
    assert len(slept) == len(events) - 2  # between tokens, not before the first
