"""The provider calls' transport: the shared pooled client, opening a streamed call, Stop that
shuts a socket (``Cancel``) and paced body reads (``paced_reads``).

The two last reach below httpx's public API into httpcore (1.0.x, pinned in pyproject.toml), and
this module is the only place that does: the ``network_stream`` response extension, its
``get_extra_info("socket")``, and the fact that httpcore's HTTP/1.1 connection reads a body
through that same object's ``read(max_bytes, timeout=...)``, looked up on the instance on each
read. ``tests/providers/test_paced_reads.py`` checks all three against the installed httpcore and
names what is missing. Without them nothing breaks loudly: Stop waits for the next chunk or the
read timeout, and reads go unpaced; hence the pin and the test. Imports httpx and ``errors``
only.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import httpx

from app.providers.errors import ProviderError


class Cancel:
    """Abandons one provider call from another thread (Stop, a client that went away).

    httpx's sync API cannot interrupt a read that is waiting on a silent model, so ``cancel()``
    shuts down the socket of the response being read (registered with ``watching``): the read
    wakes at once with an end of stream, the adapter raises, and the chain, seeing ``cancelled``,
    tries nothing more. The lock makes sure a socket is never shut down after ``watching`` has
    ended, when its connection may already serve another request from the pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._socket: socket.socket | None = None
        self.reason = ""  # the first caller's word for why (the chat layer's: "shutdown")

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self, reason: str = "stop") -> None:
        with self._lock:
            if not self._cancelled:
                self.reason = reason
            self._cancelled = True
            if self._socket is not None:
                _shut(self._socket)

    @contextmanager
    def watching(self, response: httpx.Response) -> Iterator[None]:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock
            if self._cancelled and sock is not None:  # cancelled while the headers were awaited
                _shut(sock)
        try:
            yield
        finally:
            with self._lock:
                self._socket = None


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed: nothing is being read from it
        pass


class Reading:
    """How many streamed bodies this process reads paced at once (``paced_reads`` counts
    them): while any is, the relay leaves the joining of a window's tokens to the reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.size = 0

    @contextmanager
    def member(self) -> Iterator[None]:
        with self._lock:
            self.size += 1
        try:
            yield
        finally:
            with self._lock:
                self.size -= 1


READING = Reading()


def reads_paced() -> bool:
    """Whether this process reads provider bodies paced now (``READING``): then a window's
    tokens come out of one read, and the relay (``chat/relay.py``) need not wait to join them."""
    return READING.size > 0


class Pacer:
    """Paces the socket reads of one streamed body (``paced_reads``) once ``start`` is called.

    A model sends each token in its own small write, a few milliseconds apart. Read as they
    come, every token costs a blocking socket read: a wait, a wake-up, a ``recv``, about
    0.1 ms of CPU each on our machines, the largest single cost of relaying a reply
    (docs/benchmarks.md, section 15). The relay joins the text of one
    ``CHAT_STREAM_COALESCE_MS`` window into one event anyway, so waiting that long before the
    next read delays nothing a reader sees, and one read then takes every token of the window
    from the socket buffer. The adapters call ``start`` at their first text: what comes before
    it (the stream's opening events, the wait for the model) is read at once, so the first
    token is never held back; the last one is, by at most ``pace``. They call ``stop`` when the
    text is over (the provider's end of text, its finish reason): what follows it (usage, the
    terminal event) is read at once again, since no later text can join it. A ``Cancel``
    still ends the body: it shuts the socket, which the next read finds closed."""

    def __init__(
        self,
        pace: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pace = pace
        self.active = False
        self.over = False
        self._last: float | None = None
        self._clock, self._sleep = clock, sleep

    def start(self) -> None:
        self.active = self.pace > 0 and not self.over

    def stop(self) -> None:
        """The text is over: no read waits from now on."""
        self.over = True
        self.active = False

    def before_read(self) -> None:
        if self.active and self._last is not None:
            wait = self._last + self.pace - self._clock()
            if wait > 0:
                self._sleep(wait)

    def after_read(self) -> None:
        self._last = self._clock()


@contextmanager
def paced_reads(response: httpx.Response, pace: float) -> Iterator[Pacer]:
    """A ``Pacer`` for the body of ``response``, installed on its connection's reads.

    httpx has no setting for this. For a response that is not an upgrade, httpcore's
    ``network_stream`` extension is the very stream its HTTP/1.1 connection reads the body
    from, with ``read(max_bytes, timeout)``; the pacing is installed on that object for this
    body only. It applies only to the thread (greenlet) reading this body: when the body ends,
    httpcore may hand the connection to the next request before the pacing is removed (its pool
    lock can switch greenlets), and that request reads as usual."""
    pacer = Pacer(pace)
    stream = response.extensions.get("network_stream")
    if pace <= 0 or stream is None or not callable(getattr(type(stream), "read", None)):
        yield pacer
        return
    read = type(stream).read.__get__(stream)  # the class's own method, never another wrapper
    owner = threading.get_ident()  # the thread (greenlet, under gevent) reading this body

    def paced(max_bytes: int, timeout: float | None = None) -> bytes:
        if threading.get_ident() != owner:
            # The body is read and its connection already serves the next request (httpcore
            # may hand it over before ``uninstall`` runs): that request reads as usual.
            return read(max_bytes, timeout)
        pacer.before_read()
        data = read(max_bytes, timeout)
        pacer.after_read()
        return data

    def uninstall() -> None:
        if stream.__dict__.get("read") is paced:  # ours, not the next request's
            del stream.read  # the class's own method again

    stream.read = paced
    try:
        with READING.member():
            yield pacer
    finally:
        uninstall()


@contextmanager
def open_stream(
    client: httpx.Client,
    url: str,
    *,
    json: dict[str, Any],
    headers: dict[str, str],
    cancel: Cancel | None,
    status_error: Callable[[httpx.Response], ProviderError],
    pace: float = 0.0,
) -> Iterator[tuple[httpx.Response, Pacer]]:
    """POST a streamed request, for the adapters' ``stream``: a non-2xx answer is read and
    raised as ``status_error(response)``; a 2xx one is read by the caller while ``cancel``
    watches it, its socket at most once per ``pace`` seconds once the caller starts the
    ``Pacer`` (``paced_reads``). httpx errors are left to the caller (``transport_error``)."""
    with client.stream("POST", url, json=json, headers=headers) as response:
        if not response.is_success:
            response.read()
            raise status_error(response)
        with paced_reads(response, pace) as pacer:
            if cancel is None:
                yield response, pacer
            else:
                with cancel.watching(response):
                    yield response, pacer


# --- the shared client --------------------------------------------------------------------------


class ClientTimeouts(Protocol):
    """What ``make_http_client`` reads of the settings (``types.ProviderSettings``)."""

    timeout_seconds: float
    connect_timeout_seconds: float


# Enough connections for ~200 concurrent streams per process, with headroom.
POOL_MAX_CONNECTIONS = 400
POOL_MAX_KEEPALIVE = 100


def make_http_client(settings: ClientTimeouts) -> httpx.Client:
    """The one pooled client per process, shared by every adapter (httpx.Client is thread-safe).

    ``read`` is an idle timeout (per chunk), not a total: long streams are fine while bytes flow.
    Waiting for a free pooled connection is bounded by the connect timeout. ``trust_env=False``:
    proxy environment variables never divert provider or loopback (test) traffic."""
    timeout = httpx.Timeout(
        connect=settings.connect_timeout_seconds,
        read=settings.timeout_seconds,
        write=settings.timeout_seconds,
        pool=settings.connect_timeout_seconds,
    )
    limits = httpx.Limits(
        max_connections=POOL_MAX_CONNECTIONS,
        max_keepalive_connections=POOL_MAX_KEEPALIVE,
        keepalive_expiry=30.0,
    )
    return httpx.Client(timeout=timeout, limits=limits, trust_env=False, follow_redirects=False)
