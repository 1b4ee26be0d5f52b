"""Request bodies as gunicorn hands them over: chunked bodies with no ``Content-Length``.

A client that streams a 15 MB body in chunks must be refused at the route's cap (JSON, form or
upload) with a 413, without the worker reading the rest into memory: the worker's peak memory
(``VmHWM``) stays where it was and it goes on answering.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.filehelp import multipart
from tools.servers import free_port, gunicorn, migrate, server_env

pytestmark = pytest.mark.server  # gunicorn or a private server per test or module

BIG = 15 * 1024 * 1024


def streamed(head: bytes, filler: bytes, total: int, tail: bytes) -> Iterator[bytes]:
    """``total`` bytes in 64 KiB chunks (a generator: httpx sends it chunked)."""
    yield head
    sent = len(head) + len(tail)
    piece = filler * (65536 // len(filler))
    while sent < total:
        yield piece
        sent += len(piece)
    yield tail


def peak_memory_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_server_database):
    env = server_env(
        module_server_database,
        free_port(),
        UPLOAD_DIR=str(tmp_path_factory.mktemp("uploads")),
    )
    migrate(env)
    with gunicorn(env, tmp_path_factory.mktemp("gunicorn")) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base, trust_env=False, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def token(client):
    r = client.post(
        "/api/auth/register",
        json={"email": "edge@example.com", "password": "correct horse battery"},
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


@pytest.fixture(scope="module")
def project_id(client, token):
    r = client.post("/api/projects", json={"name": "Edge"}, headers=auth(token))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def worker(server, client, token, project_id):
    """The one worker's id and its peak memory before the test (warmed up by real requests)."""
    (pid,) = server.workers()
    for _ in range(3):
        assert client.get("/api/projects", headers=auth(token)).status_code == 200
    return pid, peak_memory_mb(pid)


def still_healthy(client, token, pid, peak_before) -> None:
    """The body was not read into memory (peak memory of the worker did not grow), and the
    worker goes on answering."""
    grown = peak_memory_mb(pid) - peak_before
    assert grown < 10, f"the worker's peak memory grew by {grown:.0f} MB"
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/projects", headers=auth(token)).status_code == 200


def test_chunked_json_over_the_limit_is_413_without_reading_it(client, token, worker):
    pid, peak = worker
    body = streamed(b'{"name": "Big", "pad": "', b"x", BIG, b'"}')
    r = client.post(
        "/api/projects",
        content=body,
        headers={**auth(token), "Content-Type": "application/json"},
    )
    still_healthy(client, token, pid, peak)
    assert r.status_code == 413, r.text[:200]
    assert r.json()["error"]["code"] == "payload_too_large"
    names = [p["name"] for p in client.get("/api/projects", headers=auth(token)).json()["data"]]
    assert "Big" not in names
    anonymous = client.post(
        "/api/auth/login",
        content=streamed(b'{"email": "a@example.com", "password": "', b"y", BIG, b'"}'),
        headers={"Content-Type": "application/json"},
    )
    assert anonymous.status_code == 413
    still_healthy(client, token, pid, peak)


def test_chunked_form_over_the_limit_is_a_413_page(client, token, worker):
    pid, peak = worker
    body = streamed(b"email=a%40example.com&password=", b"z", BIG, b"")
    r = client.post(
        "/login", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    still_healthy(client, token, pid, peak)
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("text/html")


def test_chunked_uploads_keep_their_own_limit(client, token, project_id, worker):
    pid, peak = worker
    url = f"/api/projects/{project_id}/files"
    small, content_type = multipart("half.txt", b"h" * (1024 * 1024))
    ok = client.post(
        url,
        content=iter([small[i : i + 65536] for i in range(0, len(small), 65536)]),
        headers={**auth(token), "Content-Type": content_type},
    )
    assert ok.status_code == 201, ok.text  # larger than the JSON limit: uploads have their own

    empty, _ = multipart("big.txt", b"")
    cut = empty.index(b"\r\n--", 10)  # the part's headers, 25 MB of file, the closing boundary
    big = client.post(
        url,
        content=streamed(empty[:cut], b"b", 25 * 1024 * 1024, empty[cut:]),
        headers={**auth(token), "Content-Type": content_type},
    )
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "payload_too_large"
    still_healthy(client, token, pid, peak)


def test_deep_json_is_400_through_the_server(client):
    body = '{"email": "a@example.com", "password": "x", "pad": ' + "[" * 50_000 + "]" * 50_000
    r = client.post(
        "/api/auth/login", content=body + "}", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "json_too_deep"


def test_a_refused_body_is_read_before_the_connection_closes(server, project_id):
    """An upload refused before its body is read (no token: a 401; in the cluster, the
    database away: a 503): the answer comes at once, and the server keeps reading until the
    body has arrived, then closes. Before, it closed right after the answer, so the body still
    on its way met a closed socket and a reset, and HAProxy, still sending it, lost headers of
    the answer (``SD`` in its log: the cluster's upload 503 without ``X-Served-By``)."""
    body, content_type = multipart("notes.txt", b"x" * 4096)
    head = (
        f"POST /api/projects/{project_id}/files HTTP/1.1\r\nHost: edge\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    port = int(server.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)  # the body follows later, as a proxy forwards it
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        length = int(re.search(rb"(?i)content-length: (\d+)", answer).group(1))
        while len(answer) - answer.index(b"\r\n\r\n") - 4 < length:
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 401")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):  # not closed: waiting for the body
            assert sock.recv(1) == b"", "closed with the body unread"
        sock.sendall(body)
        sock.settimeout(5)
        assert sock.recv(1) == b""  # then closed, with nothing more to say
