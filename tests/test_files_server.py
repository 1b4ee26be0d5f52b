"""Uploads against a real threaded HTTP server over a raw socket: an oversize body is refused
from its Content-Length before it is sent, and an upload cut off mid-body leaves nothing."""

from __future__ import annotations

import socket
import threading

import pytest
from werkzeug.serving import make_server

from tests.factories import make_project
from tests.filehelp import folder, rows

BOUNDARY = "----prompthub-raw"


class Finished:
    """WSGI middleware: signals when the app has finished handling a request."""

    def __init__(self, app):
        self.app = app
        self.done = threading.Event()

    def __call__(self, environ, start_response):
        try:
            yield from self.app(environ, start_response)
        finally:
            self.done.set()


@pytest.fixture
def server(app):
    wrapped = Finished(app.wsgi_app)
    app.wsgi_app = wrapped
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_port, wrapped.done
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner)


def request_head(project_id, token, length) -> bytes:
    return (
        f"POST /api/projects/{project_id}/files HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def part_head(name="big.txt") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()


def read_all(sock) -> str:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("latin-1")


def test_oversize_upload_is_refused_before_the_body_is_sent(app, server, owner, project_id):
    port, _ = server
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    declared = 500 * 1024 * 1024  # 500 MB announced; we send almost none of it
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        # Only the headers: the answer must come without a byte of the body. (Sending body bytes
        # the server never reads would let its close turn into a reset that eats the answer.)
        sock.sendall(request_head(project_id, owner.token, declared))
        answer = read_all(sock)
    status_line = answer.split("\r\n", 1)[0]
    assert status_line.endswith("413 REQUEST ENTITY TOO LARGE"), answer[:200]
    assert '"code":"payload_too_large"' in answer.replace(" ", "")
    assert rows(app) == []


def test_upload_cut_off_mid_body_leaves_no_file_and_no_row(app, server, owner, project_id):
    port, done = server
    body_len = 200 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request_head(project_id, owner.token, body_len) + part_head())
        sock.sendall(b"y" * (body_len // 2))  # then the client goes away
    assert done.wait(5), "the server never finished the request"
    assert rows(app) == []
    uploads = folder(app, project_id)
    assert not uploads.exists() or list(uploads.iterdir()) == []
