"""The relay: the provider chain's events in, what readers should be sent out. No Flask, no
database.

A pump thread (``pump``) moves the chain's events (``providers/events.py``) into a queue, so the
side that relays them never blocks in a provider read: while the model is silent it can still say so
(``Heartbeat``, every ``heartbeat`` seconds), and a Stop can close the upstream response at once
(``Cancel``). ``relay`` reads that queue and yields the same events:

- ``Text``: reply text. The first piece is passed on at once; after it, pieces arriving within
  one ``coalesce`` window are joined into one (less work per token on a CPU-bound relay).
  ``coalesce`` 0 passes every provider piece on as it came, however far behind the reader is.
  While the provider's reads are paced (``paced``: ``transport.reads_paced``) they come a
  window apart already, each with the window's tokens, so the relay joins what is queued and
  does not wait again (that would only cost a wake-up and hold the text); the window's wait
  is for bodies read as they come.
  Nothing waits once the stream's end is in (``Handoff.ended``: the chain's ``Done``, its
  exception, the pump's end): the window's wait ends then, and the last text and ``Done``
  are passed on as they come;
- ``Heartbeat``: nothing arrived for ``heartbeat`` seconds;
- the chain's ``Committed`` (who answers, just before the first text) and ``Done``, and any
  other event, unchanged;
- ``Failed``: the chain raised its ``ProviderError`` (``error``); nothing follows.

Any other exception from the chain is raised from ``relay``. The ``Handoff`` (a queue and the
flag of the stream's end) is the only shared state, so the relay is tested on plain handoffs of
events (tests/test_relay.py).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass

from app.providers.errors import ProviderError
from app.providers.events import Done, Event, Failed, Heartbeat, Text
from app.providers.transport import Cancel, reads_paced

END = object()  # the pump's last item


@dataclass(frozen=True)
class Raised:
    """An exception the chain raised, handed from the pump to the relay (queue plumbing, not an
    event: the relay makes it a ``Failed`` or raises it)."""

    error: BaseException


class Handoff:
    """The pump's queue to the relay, and ``ended``: set with the first item that ends the
    stream (the chain's ``Done``, a ``Raised``, ``END``). The relay waits on ``ended`` between
    two coalesced writes, so the end of a stream never waits for the window to run out: set
    once per stream, it costs no wake-up per token."""

    def __init__(self) -> None:
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self.ended = threading.Event()

    def put(self, item: object) -> None:
        self._items.put(item)
        if item is END or isinstance(item, Done | Raised):
            self.ended.set()

    def get(self, timeout: float | None = None) -> object:
        return self._items.get(timeout=timeout)

    def get_nowait(self) -> object:
        return self._items.get_nowait()


def pump(events: Iterator[Event], out: Handoff, cancel: Cancel) -> None:
    """Thread body: move provider events into ``out`` until the end or a Stop."""
    try:
        with closing(events):  # closing the generator closes the upstream HTTP response
            for event in events:
                out.put(event)
                if cancel.cancelled:
                    break
    except BaseException as exc:  # handed to the relay, which decides
        out.put(Raised(exc))
    finally:
        out.put(END)


HEARTBEAT = Heartbeat()


def relay(
    source: Handoff,
    *,
    heartbeat: float,
    coalesce: float,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], object] | None = None,
    paced: Callable[[], bool] = reads_paced,
) -> Iterator[Event]:
    """``wait(seconds)`` is the window's wait: by default ``source.ended.wait``, which returns
    as soon as the stream's end is queued (tests pass a clock's sleep)."""
    wait = wait or source.ended.wait
    pending = None  # an item taken from the queue while coalescing, handled next
    written: float | None = None  # when the last text was passed on
    while True:
        if pending is not None:
            item, pending = pending, None
        else:
            if written is not None and coalesce and not (source.ended.is_set() or paced()):
                remaining = written + coalesce - clock()
                if remaining > 0:
                    wait(remaining)  # let the next few pieces gather, unless the end comes
            try:
                item = source.get(timeout=heartbeat)
            except queue.Empty:
                yield HEARTBEAT
                continue
        if item is END:
            return
        if isinstance(item, Raised):
            if isinstance(item.error, ProviderError):
                yield Failed(item.error)
                return
            raise item.error
        if not isinstance(item, Text):
            yield item  # Committed, Done, and kinds of event the relay does not join
            continue
        if not item.text:
            continue
        chunk = [item.text]
        while coalesce:  # join what is already waiting
            try:
                nxt = source.get_nowait()
            except queue.Empty:
                break
            if isinstance(nxt, Text):
                chunk.append(nxt.text)
            else:
                pending = nxt
                break
        # One piece is passed on as it came (no new object); several are joined.
        yield item if len(chunk) == 1 else Text("".join(chunk))
        written = clock()
