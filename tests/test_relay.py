"""The relay on plain queues of provider events: no Flask, no database, no network."""

from __future__ import annotations

import queue

import pytest

from app.chat import relay
from app.providers.base import Cancel, ProviderUnavailable, TextDelta
from app.providers.chain import ChainEnd, Committed


class Clock:
    """A clock the relay's coalescing waits advance, so tests need no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


def queued(*items) -> queue.SimpleQueue:
    q: queue.SimpleQueue = queue.SimpleQueue()
    for item in items:
        q.put(item)
    return q


def run(source, *, coalesce=0.025, heartbeat=1.0, clock=None):
    clock = clock or Clock()
    return list(
        relay.relay(source, heartbeat=heartbeat, coalesce=coalesce, clock=clock, sleep=clock.sleep)
    )


COMMITTED = Committed("openai", "gpt-4o-mini", False)


def test_the_first_text_goes_alone_then_what_waits_is_joined():
    source = queued(COMMITTED, TextDelta("Hel"), TextDelta("lo"), TextDelta(" there"), relay.END)
    clock = Clock()
    events = run(source, clock=clock)
    # ``Hel`` was joined with what was already queued behind it; nothing waited before it.
    assert events == [COMMITTED, relay.Text("Hello there")]
    assert clock.slept == []


def test_after_the_first_text_the_relay_waits_one_window_before_reading_again():
    source = queued(TextDelta("a"))
    clock = Clock()
    events = relay.relay(source, heartbeat=1.0, coalesce=0.025, clock=clock, sleep=clock.sleep)
    assert next(events) == relay.Text("a")
    source.put(TextDelta("b"))
    source.put(TextDelta("c"))
    source.put(relay.END)
    assert list(events) == [relay.Text("bc")]
    assert clock.slept == [0.025]  # one coalescing window, then both pieces in one write


def test_events_other_than_text_split_the_joined_pieces():
    end = ChainEnd(meta=None, fallback=False)
    source = queued(TextDelta("a"), TextDelta("b"), end, TextDelta("c"), relay.END)
    assert run(source) == [relay.Text("ab"), end, relay.Text("c")]


def test_without_coalescing_every_piece_is_its_own_text_even_when_they_queued_up():
    source = queued(TextDelta("a"), TextDelta("b"), TextDelta("c"), relay.END)
    assert run(source, coalesce=0) == [relay.Text("a"), relay.Text("b"), relay.Text("c")]


def test_empty_text_is_dropped():
    assert run(queued(TextDelta(""), relay.END)) == []


def test_silence_is_reported_every_heartbeat():
    events = relay.relay(queued(), heartbeat=0.01, coalesce=0)
    assert [next(events), next(events)] == [relay.Idle(), relay.Idle()]


def test_a_provider_error_ends_the_relay_as_a_failure():
    error = ProviderUnavailable("openai", "down")
    source = queued(TextDelta("partial"), relay.Raised(error), TextDelta("never"), relay.END)
    assert run(source, coalesce=0) == [relay.Text("partial"), relay.Failure(error)]


def test_any_other_exception_is_raised():
    with pytest.raises(KeyError):
        run(queued(relay.Raised(KeyError("bug")), relay.END))


def test_the_pump_moves_events_and_ends_with_the_end_marker():
    out: queue.SimpleQueue = queue.SimpleQueue()
    relay.pump((d for d in [TextDelta("a"), TextDelta("b")]), out, Cancel())
    assert [out.get_nowait() for _ in range(3)] == [TextDelta("a"), TextDelta("b"), relay.END]


def test_the_pump_stops_at_a_cancel_and_closes_the_stream():
    closed = []

    def stream():
        try:
            yield TextDelta("a")
            yield TextDelta("b")
        finally:
            closed.append(True)

    cancel = Cancel()
    cancel.cancel()
    out: queue.SimpleQueue = queue.SimpleQueue()
    relay.pump(stream(), out, cancel)
    assert [out.get_nowait() for _ in range(2)] == [TextDelta("a"), relay.END]
    assert closed == [True]


def test_the_pump_hands_exceptions_over():
    def stream():
        yield TextDelta("a")
        raise ProviderUnavailable("openai", "gone")

    out: queue.SimpleQueue = queue.SimpleQueue()
    relay.pump(stream(), out, Cancel())
    first, raised, end = (out.get_nowait() for _ in range(3))
    assert first == TextDelta("a") and isinstance(raised.error, ProviderUnavailable)
    assert end is relay.END
