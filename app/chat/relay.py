"""The relay: provider events in, what readers should be sent out. No Flask, no database.

A pump thread (``pump``) moves the provider chain's events into a queue, so the side that
relays them never blocks in a provider read: while the model is silent it can still say so
(``Idle``, every ``heartbeat`` seconds), and a Stop can close the upstream response at once
(``Cancel``). ``relay`` reads that queue and yields:

- ``Text``: reply text. The first piece is passed on at once; after it, pieces arriving within
  one ``coalesce`` window are joined into one (less work per token on a CPU-bound relay).
  ``coalesce`` 0 passes every provider piece on as its own ``Text``, however far behind the
  reader is;
- ``Idle``: nothing arrived for ``heartbeat`` seconds;
- the chain's ``Committed`` (who answers, just before the first text) and ``ChainEnd``;
- ``Failure``: the chain's ``ProviderError``, after which nothing follows.

Any other exception from the chain is raised from ``relay``. The queue is the only shared
state, so the relay is tested on plain queues of events (tests/test_relay.py).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass

from app.providers.base import Cancel, ProviderError, TextDelta
from app.providers.chain import ChainEnd, Committed

END = object()  # the pump's last item


@dataclass(frozen=True)
class Raised:
    """An exception the chain raised, handed from the pump to the relay."""

    error: BaseException


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Idle:
    """Nothing arrived for ``heartbeat`` seconds."""


@dataclass(frozen=True)
class Failure:
    error: ProviderError


RelayEvent = Text | Idle | Committed | ChainEnd | Failure


def pump(events: Iterator, out: queue.SimpleQueue, cancel: Cancel) -> None:
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


def relay(
    source: queue.SimpleQueue,
    *,
    heartbeat: float,
    coalesce: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[RelayEvent]:
    pending = None  # an item taken from the queue while coalescing, handled next
    written: float | None = None  # when the last text was passed on
    while True:
        if pending is not None:
            item, pending = pending, None
        else:
            if written is not None and coalesce:
                wait = written + coalesce - clock()
                if wait > 0:
                    sleep(wait)  # let the next few pieces gather
            try:
                item = source.get(timeout=heartbeat)
            except queue.Empty:
                yield Idle()
                continue
        if item is END:
            return
        if isinstance(item, Raised):
            if isinstance(item.error, ProviderError):
                yield Failure(item.error)
                return
            raise item.error
        if isinstance(item, (ChainEnd, Committed)):
            yield item
            continue
        if isinstance(item, TextDelta) and item.text:
            chunk = [item.text]
            while coalesce:  # join what is already waiting
                try:
                    nxt = source.get_nowait()
                except queue.Empty:
                    break
                if isinstance(nxt, TextDelta):
                    chunk.append(nxt.text)
                else:
                    pending = nxt
                    break
            yield Text("".join(chunk))
            written = clock()
