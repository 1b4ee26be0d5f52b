"""The S3 store under gunicorn as production runs it (gevent workers, ``gunicorn.conf.py``):
a big file up and down (boto3's multipart upload inside a gevent worker), an upload cut off
mid-body (no object, no row, no staged file), and a missing bucket stopping the server at
start with the reason."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
import uuid

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import S3_BUCKET
from tests.filehelp import multipart
from tools.servers import BIN, ROOT, free_port, gunicorn, migrate, server_env

pytestmark = pytest.mark.server  # gunicorn or a private server per test or module

BOUNDARY = "----prompthub-raw"


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"srv-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def staging(tmp_path_factory):
    return tmp_path_factory.mktemp("staging")


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_server_database, seaweed, prefix, staging):
    env = server_env(
        module_server_database,
        free_port(),
        UPLOAD_DIR=str(tmp_path_factory.mktemp("uploads")),
        STORAGE_STAGING_DIR=str(staging),
        **seaweed.settings(S3_BUCKET, prefix),
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
    r = client.post("/api/auth/register", json={"email": "s3@example.com", "password": "x" * 12})
    assert r.status_code == 201, r.text
    return r.json()["token"]


@pytest.fixture(scope="module")
def project_id(client, token):
    r = client.post(
        "/api/projects", json={"name": "S3"}, headers={"Authorization": f"Bearer {token}"}
    )
    return r.json()["id"]


def file_count(database_url: str) -> int:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM files")).scalar_one()
    finally:
        engine.dispose()


def test_a_big_file_goes_up_in_parts_and_comes_down_whole(
    client, token, project_id, seaweed, prefix, staging
):
    content = bytes(range(256)) * (12 * 4096)  # 12 MiB: a multipart upload (8 MiB parts)
    body, content_type = multipart("notes.txt", b"Refunds: 30 days.\n")
    auth = {"Authorization": f"Bearer {token}"}
    small = client.post(
        f"/api/projects/{project_id}/files",
        content=body,
        headers={**auth, "Content-Type": content_type},
    )
    assert small.status_code == 201, small.text
    body, content_type = multipart("data.png", b"\x89PNG\r\n\x1a\n" + content)
    big = client.post(
        f"/api/projects/{project_id}/files",
        content=body,
        headers={**auth, "Content-Type": content_type},
    )
    assert big.status_code == 201, big.text
    file_id = big.json()["id"]
    with client.stream(
        "GET", f"/api/projects/{project_id}/files/{file_id}/download", headers=auth
    ) as resp:
        assert resp.status_code == 200
        digest = hashlib.sha256()
        for chunk in resp.iter_raw():
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(b"\x89PNG\r\n\x1a\n" + content).hexdigest()
    assert len(seaweed.keys(S3_BUCKET, f"{prefix}/{project_id}/")) == 2
    assert [p for p in staging.rglob("*") if p.is_file()] == []


def test_an_upload_cut_off_mid_body_leaves_no_object_no_row_and_no_staged_file(
    server, token, project_id, seaweed, prefix, staging, module_server_database
):
    before_rows = file_count(module_server_database)
    before_keys = seaweed.keys(S3_BUCKET, f"{prefix}/")
    length = 4 * 1024 * 1024
    head = (
        f"POST /api/projects/{project_id}/files HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="cut.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    port = int(server.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + b"y" * (length // 2))  # half the body, then the client goes
    # The worker has finished with the request once its access line is written.
    deadline = time.monotonic() + 30
    while f"path=/api/projects/{project_id}/files status=" not in server.log():
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    assert file_count(module_server_database) == before_rows
    assert seaweed.keys(S3_BUCKET, f"{prefix}/") == before_keys
    assert [p for p in staging.rglob("*") if p.is_file()] == []
    assert httpx.get(server.base + "/healthz", trust_env=False).status_code == 200


def test_a_missing_bucket_stops_the_server_at_start_with_the_reason(
    tmp_path, seaweed, server_database
):
    env = server_env(
        server_database,
        free_port(),
        UPLOAD_DIR=str(tmp_path / "uploads"),
        **seaweed.settings("no-such-bucket-at-start"),
    )
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "app:create_app()"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            code = proc.wait(timeout=60)
        finally:
            proc.kill()
            proc.wait()
    text_ = log.read_text()
    assert code == 3, text_
    assert (
        "file storage is not usable, not serving: the bucket no-such-bucket-at-start does not "
        "exist" in text_
    )
    assert "Worker failed to boot" in text_
