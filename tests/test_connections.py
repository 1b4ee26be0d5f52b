"""Database connections held while the server waits on something slow: none.

A request that waits on a provider or on the file store must not hold a pooled connection
(``app/transactions.py``: ``release``, ``transaction(keep_loaded=True)``): the pool would
cap concurrent replies and uploads at its size. The app runs on a real HTTP server in this
process (``in_thread``, ``tools/servers.py``), so SQLAlchemy's pool (``checkedout``) is read
directly while the wait is going on:

- a slow provider: the fake provider holds its first token back (``ttft_ms``); the pool is
  sampled from the moment the fake has the request until the reply has started;
- an upload to S3 (SeaweedFS, ``tools/seaweed.py``) through a TCP relay that slows the bytes
  going to the store: the pool is sampled by the relay each time it forwards a piece of the
  upload, so every sample is taken during the put itself.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from app.extensions import db
from tests.factories import make_project
from tools.fake_provider import Scenario
from tools.servers import in_thread

pytestmark = [pytest.mark.use_fake(openrouter=False), pytest.mark.server]  # S3, a real server

PROVIDER_DELAY_MS = 1500


@pytest.fixture
def config_overrides(request, s3_settings, relay):
    """The fake provider, and the session's S3 server reached through ``relay``."""
    fake = request.getfixturevalue("fake").app_config(openrouter=False)
    return {**fake, **s3_settings, "STORAGE_S3_ENDPOINT_URL": relay.url}


class SlowRelay:
    """A TCP relay to the S3 server that passes the bytes going to it in small pieces, a pause
    after each, and calls ``sample`` as it does: an upload through it takes a while, and
    ``samples`` are taken while it goes on."""

    PIECE = 64 * 1024
    PAUSE = 0.01

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sample = lambda: None
        self.samples: list[int] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, to_store: bool) -> None:
        try:
            while data := source.recv(self.PIECE):
                if to_store:
                    value = self.sample()
                    if value is not None:
                        with self.lock:
                            self.samples.append(value)
                    time.sleep(self.PAUSE)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def relay(seaweed):
    found = SlowRelay(seaweed.endpoint_url)
    yield found
    found.close()


def checked_out(app) -> int:
    with app.app_context():
        return db.engine.pool.checkedout()


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "one-response"])
def test_no_connection_is_held_while_a_slow_provider_answers(app, owner, fake, stream):
    project_id = make_project(app, owner)
    fake.script("responses", Scenario(ttft_ms=PROVIDER_DELAY_MS))
    samples: list[int] = []
    with in_thread(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        answer: dict = {}

        def chat() -> None:
            answer["resp"] = http.post(
                f"/api/projects/{project_id}/chat",
                json={"message": "Take your time.", "stream": stream},
                headers=owner.headers,
            )

        caller = threading.Thread(target=chat)
        caller.start()
        deadline = time.monotonic() + 10
        while not fake.calls("responses"):  # the provider has the request: the wait begins
            assert time.monotonic() < deadline, "the provider was never called"
            time.sleep(0.005)
        waited_from = time.monotonic()
        while time.monotonic() - waited_from < PROVIDER_DELAY_MS / 1000 * 0.8:
            samples.append(checked_out(app))
            time.sleep(0.01)
        caller.join(timeout=30)
    resp = answer["resp"]
    assert resp.status_code == 200, resp.text
    assert ("event: done" in resp.text) if stream else resp.json()["reply"]
    assert len(samples) > 20
    assert max(samples) == 0, f"connections held while the provider was slow: {samples}"


def test_no_connection_is_held_while_an_upload_goes_to_s3(app, owner, relay, seaweed):
    project_id = make_project(app, owner)
    relay.sample = lambda: checked_out(app)
    body = b"A line of plain text for the store.\n" * 60_000  # ~2 MB: ~30 pieces through relay
    with in_thread(app) as base, httpx.Client(base_url=base, timeout=60) as http:
        resp = http.post(
            f"/api/projects/{project_id}/files",
            files={"file": ("notes.txt", body, "text/plain")},
            headers=owner.headers,
        )
    assert resp.status_code == 201, resp.text
    assert len(relay.samples) > 10  # the put went through the relay, in pieces
    assert max(relay.samples) == 0, f"connections held during the put: {relay.samples}"
