"""The relay on plain handoffs of provider events: no Flask, no database, no network."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from app.chat import relay
from app.providers.errors import ProviderUnavailable
from app.providers.events import Committed, Done, Failed, Heartbeat, Text
from app.providers.transport import Cancel


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


def queued(*items) -> relay.Handoff:
    q = relay.Handoff()
    for item in items:
        q.put(item)
    return q


def run(source, *, coalesce=0.025, heartbeat=1.0, clock=None):
    clock = clock or Clock()
    return list(
        relay.relay(source, heartbeat=heartbeat, coalesce=coalesce, clock=clock, wait=clock.sleep)
    )


COMMITTED = Committed("openai", "gpt-4o-mini", False)


def test_the_first_text_goes_alone_then_what_waits_is_joined():
    source = queued(COMMITTED, Text("Hel"), Text("lo"), Text(" there"), relay.END)
    clock = Clock()
    events = run(source, clock=clock)
    # ``Hel`` was joined with what was already queued behind it; nothing waited before it.
    assert events == [COMMITTED, Text("Hello there")]
    assert clock.slept == []


def test_after_the_first_text_the_relay_waits_one_window_before_reading_again():
    source = queued(Text("a"))
    clock = Clock()
    events = relay.relay(source, heartbeat=1.0, coalesce=0.025, clock=clock, wait=clock.sleep)
    assert next(events) == Text("a")
    source.put(Text("b"))
    source.put(Text("c"))
    assert next(events) == Text("bc")
    assert clock.slept == [0.025]  # one coalescing window, then both pieces in one write
    source.put(relay.END)
    assert list(events) == []


def test_once_the_end_is_queued_the_last_text_and_done_wait_for_no_window():
    """The provider's last pieces and its ``Done`` come together, within a window of the text
    passed on before them: the relay joins the pieces and passes them and ``Done`` on without
    waiting for that window to end, and waits no window after ``Done`` for the pump's end."""
    end = Done(meta=None, fallback=False)
    source = queued(Text("a"))
    clock = Clock()
    events = relay.relay(source, heartbeat=1.0, coalesce=0.025, clock=clock, wait=clock.sleep)
    assert next(events) == Text("a")
    for item in (Text("b"), Text("c"), end, relay.END):
        source.put(item)
    assert list(events) == [Text("bc"), end]
    assert clock.slept == []


def test_the_window_waits_on_the_end_of_the_stream():
    """The window's own wait is the handoff's flag, raised by what ends a stream (``Done``, an
    exception, the pump's end) and by nothing else."""
    for items, ended in (
        ([COMMITTED, Text("a"), Heartbeat()], False),
        ([Text("a"), Done(meta=None, fallback=False)], True),
        ([relay.Raised(ProviderUnavailable("openai", "down"))], True),
        ([relay.END], True),
    ):
        assert queued(*items).ended.is_set() is ended
    source = queued(Text("a"))
    waiting, woken = threading.Event(), []

    def wait(seconds):
        waiting.set()
        woken.append(source.ended.wait(seconds))  # True: the flag ended it, not the time

    def pump_the_end():
        waiting.wait()
        source.put(Text("b"))
        source.put(relay.END)

    events = relay.relay(source, heartbeat=60.0, coalesce=30.0, wait=wait)
    assert next(events) == Text("a")
    thread = threading.Thread(target=pump_the_end)
    thread.start()
    assert list(events) == [Text("b")]
    thread.join()
    assert woken == [True]


def test_events_other_than_text_split_the_joined_pieces():
    end = Done(meta=None, fallback=False)
    source = queued(Text("a"), Text("b"), end, Text("c"), relay.END)
    assert run(source) == [Text("ab"), end, Text("c")]


def test_without_coalescing_every_piece_is_its_own_text_even_when_they_queued_up():
    source = queued(Text("a"), Text("b"), Text("c"), relay.END)
    assert run(source, coalesce=0) == [Text("a"), Text("b"), Text("c")]


def test_empty_text_is_dropped():
    assert run(queued(Text(""), relay.END)) == []


def test_silence_is_reported_every_heartbeat():
    events = relay.relay(queued(), heartbeat=0.01, coalesce=0)
    assert [next(events), next(events)] == [Heartbeat(), Heartbeat()]


def test_a_provider_error_ends_the_relay_as_a_failure():
    error = ProviderUnavailable("openai", "down")
    source = queued(Text("partial"), relay.Raised(error), Text("never"), relay.END)
    assert run(source, coalesce=0) == [Text("partial"), Failed(error)]


def test_any_other_exception_is_raised():
    with pytest.raises(KeyError):
        run(queued(relay.Raised(KeyError("bug")), relay.END))


def test_the_pump_moves_events_and_ends_with_the_end_marker():
    out = relay.Handoff()
    relay.pump((d for d in [Text("a"), Text("b")]), out, Cancel())
    assert [out.get_nowait() for _ in range(3)] == [Text("a"), Text("b"), relay.END]


def test_the_pump_stops_at_a_cancel_and_closes_the_stream():
    closed = []

    def stream():
        try:
            yield Text("a")
            yield Text("b")
        finally:
            closed.append(True)

    cancel = Cancel()
    cancel.cancel()
    out = relay.Handoff()
    relay.pump(stream(), out, cancel)
    assert [out.get_nowait() for _ in range(2)] == [Text("a"), relay.END]
    assert closed == [True]


def test_the_pump_hands_exceptions_over():
    def stream():
        yield Text("a")
        raise ProviderUnavailable("openai", "gone")

    out = relay.Handoff()
    relay.pump(stream(), out, Cancel())
    first, raised, end = (out.get_nowait() for _ in range(3))
    assert first == Text("a") and isinstance(raised.error, ProviderUnavailable)
    assert end is relay.END


def test_a_kind_of_event_the_relay_does_not_know_is_passed_on_unchanged_and_in_order():
    """The family is extendable (``providers/events.py``): a new kind of event (here a
    citation) goes through between the text it came with, which is still joined around it."""

    @dataclass(frozen=True)
    class Citation:
        url: str

    cite = Citation("https://example.com")
    source = queued(Text("a"), Text("b"), cite, Text("c"), relay.END)
    assert run(source) == [Text("ab"), cite, Text("c")]


def test_while_the_reads_are_paced_the_relay_does_not_wait_again():
    """Paced reads come a window apart already, each with the window's tokens: the relay joins
    what is queued without a wait of its own. Bodies read as they come are joined here."""
    slept = {}
    for paced in (False, True):
        source = queued(Text("a"))
        clock = Clock()
        events = relay.relay(
            source,
            heartbeat=1.0,
            coalesce=0.02,
            clock=clock,
            wait=clock.sleep,
            paced=lambda paced=paced: paced,
        )
        assert next(events) == Text("a")
        source.put(Text("b"))
        source.put(Text("c"))
        assert next(events) == Text("bc")
        slept[paced] = clock.slept
    assert slept == {False: [0.02], True: []}
