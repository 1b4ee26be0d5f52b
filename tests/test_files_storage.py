"""Project files through the app on each store: the local directory and a real S3 server
(SeaweedFS, ``tools/seaweed.py``). Uploads, downloads (headers, Range, conditional), deletes,
project deletes, hostile names, the faults (bytes missing, S3 unreachable), PDF extraction and
the OpenAI mirror reading through the store, and ``flask files migrate-storage`` /
``check-storage``. Through gunicorn: ``tests/test_storage_server.py``."""

from __future__ import annotations

import hashlib
import io
import logging
import re

import pytest
from sqlalchemy import update

from app import create_app
from app.extensions import db
from tests.conftest import S3_BUCKET, CSRFClient, base_config
from tests.factories import make_project, wait_extracted
from tests.filehelp import login, multipart, rows, upload, upload_copied
from tools.pdfs import text_pdf
from tools.servers import free_port


@pytest.fixture
def config_overrides(request, storage_settings):
    """The module's store (both backends), plus the fake provider where a test asks for it."""
    marker = request.node.get_closest_marker("use_fake")
    fake = {}
    if marker is not None:
        fake = request.getfixturevalue("fake").app_config(*marker.args, **marker.kwargs)
    return {**fake, **storage_settings}


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, name="Docs bot")


def objects(app, project_id: int | None = None) -> list[str]:
    """What the app's store holds (of one project): stored names."""
    store = app.extensions["storage"]
    if store.kind == "local":
        root = store.root if project_id is None else store.folder(project_id)
        return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []
    prefix = store.prefix + "/" + (f"{project_id}/" if project_id is not None else "")
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix)
    return sorted(item["Key"].rsplit("/", 1)[1] for p in pages for item in p.get("Contents", []))


def staging_is_empty(app) -> bool:
    folder = app.extensions["storage"].staging_dir(1)
    leftovers = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    if app.extensions["storage"].kind == "local":  # the project folder: stored files only
        leftovers = [p for p in leftovers if p.name.startswith(".")]
    return leftovers == []


def download(client, owner, project_id, file_id, **headers):
    resp = client.get(
        f"/api/projects/{project_id}/files/{file_id}/download",
        headers={**owner.headers, **headers},
    )
    resp.get_data()
    resp.close()
    return resp


# --- the ordinary path, on both stores -------------------------------------------------------


def test_upload_keeps_the_bytes_in_the_store_under_a_generated_name(app, client, owner, project_id):
    content = b"# Notes\n\nShipping takes 3 days.\n"
    body = upload(client, owner, project_id, "notes.md", content).get_json()
    (row,) = rows(app)
    assert objects(app, project_id) == [row.stored_name]
    assert re.fullmatch(r"[0-9a-f]{32}", row.stored_name)
    assert body["text"]["status"] == "ok" and body["text"]["chars"] == len(content)
    assert staging_is_empty(app)


def test_downloads_carry_the_same_headers_on_every_store(app, client, owner, project_id):
    content = "Prix: 12 €\n".encode() * 1000
    body = upload(client, owner, project_id, "prix.txt", content).get_json()
    api = download(client, owner, project_id, body["id"])
    login(client, owner)
    page = client.get(f"/projects/{project_id}/files/prix.txt")
    page.get_data()
    page.close()
    for resp in (api, page):
        assert resp.status_code == 200
        assert resp.data == content
        assert resp.headers["Content-Length"] == str(len(content))
        assert resp.headers["Content-Disposition"] == "attachment; filename=prix.txt"
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
        assert resp.headers["ETag"] == f'"{hashlib.sha256(content).hexdigest()}"'
        assert resp.headers["Accept-Ranges"] == "bytes"
        assert "Last-Modified" in resp.headers
        assert "no-cache" in resp.headers["Cache-Control"]


def test_range_and_conditional_downloads(app, client, owner, project_id):
    content = b"id,value\n" + b"".join(f"{i},{i * i}\n".encode() for i in range(3000))
    file_id = upload(client, owner, project_id, "squares.csv", content).get_json()["id"]
    part = download(client, owner, project_id, file_id, Range="bytes=10000-10099")
    assert part.status_code == 206
    assert part.data == content[10000:10100]
    assert part.headers["Content-Range"] == f"bytes 10000-10099/{len(content)}"
    tail = download(client, owner, project_id, file_id, Range="bytes=-50")
    assert tail.status_code == 206 and tail.data == content[-50:]
    etag = download(client, owner, project_id, file_id).headers["ETag"]
    same = download(client, owner, project_id, file_id, **{"If-None-Match": etag})
    assert same.status_code == 304 and same.data == b""
    past = download(client, owner, project_id, file_id, Range=f"bytes={len(content) + 5}-")
    assert past.status_code == 416
    head = client.head(
        f"/api/projects/{project_id}/files/{file_id}/download", headers=owner.headers
    )
    head.close()
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(content))


def test_a_big_file_streams_through_in_one_piece(app, client, owner, project_id):
    """Over S3's multipart threshold (8 MiB): put in parts, read back as one stream."""
    content = bytes(range(256)) * (9 * 4096)  # 9 MiB, not text: an added type
    app.config["UPLOAD_ALLOWED_EXTENSIONS"] = (*app.config["UPLOAD_ALLOWED_EXTENSIONS"], ".bin")
    data, content_type = multipart("big.bin", content)  # the test client would leak a spool file
    body = client.post(
        f"/api/projects/{project_id}/files",
        data=data,
        content_type=content_type,
        headers=owner.headers,
    ).get_json()
    resp = download(client, owner, project_id, body["id"])
    assert resp.status_code == 200
    assert hashlib.sha256(resp.data).hexdigest() == hashlib.sha256(content).hexdigest()


def test_delete_removes_the_object_and_the_row(app, client, owner, project_id):
    file_id = upload(client, owner, project_id, "a.txt", b"alpha").get_json()["id"]
    kept = upload(client, owner, project_id, "b.txt", b"beta").get_json()["id"]
    resp = client.delete(f"/api/projects/{project_id}/files/{file_id}", headers=owner.headers)
    assert resp.status_code == 204
    assert [r.id for r in rows(app)] == [kept]
    assert objects(app, project_id) == [rows(app)[0].stored_name]


def test_deleting_the_project_removes_its_objects_only(app, client, owner, project_id):
    other = make_project(app, owner, name="Other")
    for i in range(3):
        upload(client, owner, project_id, f"n{i}.txt", f"note {i}".encode())
    upload(client, owner, other, "o.txt", b"other")
    assert len(objects(app, project_id)) == 3
    resp = client.delete(f"/api/projects/{project_id}", headers=owner.headers)
    assert resp.status_code == 204
    assert objects(app, project_id) == []
    assert len(objects(app, other)) == 1


@pytest.mark.parametrize("raw", ["../../x.txt", "a/b.txt", "%2e%2e.txt", "..\\..\\c.txt"])
def test_path_like_names_never_reach_a_key_or_path(app, client, owner, project_id, raw):
    resp = upload(client, owner, project_id, raw, b"hostile")
    assert resp.status_code == 201, resp.get_json()
    (row,) = rows(app)
    assert objects(app) == [row.stored_name]  # the whole store: nothing anywhere else
    if app.extensions["storage"].kind == "s3":
        store = app.extensions["storage"]
        keys = store.client.list_objects_v2(Bucket=S3_BUCKET, Prefix=store.prefix)["Contents"]
        assert [k["Key"] for k in keys] == [f"{store.prefix}/{project_id}/{row.stored_name}"]


# --- faults ----------------------------------------------------------------------------------


def test_bytes_missing_at_download_are_a_404_that_says_so(app, client, owner, project_id, caplog):
    file_id = upload(client, owner, project_id, "notes.txt", b"gone soon").get_json()["id"]
    (row,) = rows(app)
    app.extensions["storage"].delete(project_id, row.stored_name)  # lost behind our back
    with caplog.at_level(logging.ERROR, logger="app.files.services"):
        resp = download(client, owner, project_id, file_id)
    assert resp.status_code == 404
    assert resp.get_json()["error"] == {
        "code": "file_bytes_missing",
        "message": "The stored bytes of notes.txt are missing.",
    }
    assert any("stored bytes missing: notes.txt" in r.getMessage() for r in caplog.records)
    login(client, owner)
    page = client.get(f"/projects/{project_id}/files/notes.txt")
    assert page.status_code == 404
    assert "The stored bytes of notes.txt are missing." in page.get_data(as_text=True)
    # The row can still be deleted (deleting nothing in the store is fine).
    gone = client.delete(f"/api/projects/{project_id}/files/{file_id}", headers=owner.headers)
    assert gone.status_code == 204 and rows(app) == []


@pytest.fixture
def unreachable_app(app, database_url, s3_settings, tmp_path):
    """The same database, served by an app whose S3 endpoint nobody answers."""
    broken = create_app(
        base_config(
            database_url,
            UPLOAD_DIR=str(tmp_path / "uploads"),
            **{
                **s3_settings,
                "STORAGE_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                "STORAGE_S3_MAX_ATTEMPTS": 1,
            },
        )
    )
    broken.test_client_class = CSRFClient
    yield broken
    broken.extensions["broker"].shutdown()
    with broken.app_context():
        db.session.remove()
        db.engine.dispose()


S3_ONLY = pytest.mark.parametrize(
    "storage_settings", [pytest.param("s3", marks=pytest.mark.server)], indirect=True
)


@S3_ONLY
def test_s3_unreachable_at_upload_is_a_503_and_nothing_is_kept(
    app, unreachable_app, owner, project_id
):
    client = unreachable_app.test_client()
    resp = upload(client, owner, project_id, "notes.txt", b"not stored")
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "5"
    error = resp.get_json()["error"]
    assert error["code"] == "storage_unavailable"
    assert "the upload of notes.txt did not happen" in error["message"]
    assert rows(app) == []
    assert staging_is_empty(unreachable_app)
    login(client, owner)  # the page form says so too
    page = client.post(
        f"/projects/{project_id}/files",
        data={"file": (io.BytesIO(b"x"), "form.txt")},
        content_type="multipart/form-data",
        headers={"Accept": "text/html"},
        follow_redirects=True,
    )
    assert "File storage cannot be reached right now" in page.get_data(as_text=True)
    assert rows(app) == []


@S3_ONLY
def test_s3_unreachable_at_download_and_delete_is_a_503_and_the_row_stays(
    app, client, unreachable_app, owner, project_id
):
    file_id = upload(client, owner, project_id, "notes.txt", b"kept").get_json()["id"]
    broken = unreachable_app.test_client()
    resp = download(broken, owner, project_id, file_id)
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "storage_unavailable"
    gone = broken.delete(f"/api/projects/{project_id}/files/{file_id}", headers=owner.headers)
    assert gone.status_code == 503
    assert [r.id for r in rows(app)] == [file_id]
    assert download(client, owner, project_id, file_id).data == b"kept"


def test_a_pdf_is_extracted_from_the_store(app, client, owner, project_id):
    content = text_pdf("Refunds within 30 days.", "Shipping in 3 days.")
    file_id = upload(client, owner, project_id, "policy.pdf", content).get_json()["id"]
    body = wait_extracted(client, owner.headers, project_id, file_id)
    assert body["text"]["status"] == "ok" and body["text"]["pages"] == 2
    assert staging_is_empty(app)  # S3: the sandbox's temporary copy is gone


def test_a_pdf_whose_bytes_are_missing_ends_failed(app, client, owner, project_id, caplog):
    from app.files.extraction import Limits, extract_file
    from app.models import StoredFile, TextStatus

    file_id = upload(client, owner, project_id, "lost.pdf", text_pdf("Never read.")).get_json()
    file_id = file_id["id"]
    wait_extracted(client, owner.headers, project_id, file_id)
    (row,) = rows(app)
    app.extensions["storage"].delete(project_id, row.stored_name)
    with app.app_context():  # queued again (the sweep's case), its bytes gone meanwhile
        db.session.execute(
            db.update(StoredFile)
            .where(StoredFile.id == file_id)
            .values(text_status=TextStatus.PENDING, text_claimed_at=None)
        )
        db.session.commit()
        with caplog.at_level(logging.ERROR, logger="app.files.extraction"):
            assert extract_file(file_id, Limits.from_config(app.config))
    body = wait_extracted(client, owner.headers, project_id, file_id)
    assert body["text"]["status"] == "failed"
    assert body["text"]["note"] == "The stored bytes of this file are missing."
    assert any("stored bytes are missing" in r.getMessage() for r in caplog.records)


@pytest.mark.use_fake(openrouter=False, LLM_TIMEOUT_SECONDS=2.0)
def test_the_openai_copy_is_read_from_the_store(app, client, owner, project_id, fake):
    content = b"# Returns\n\n30 days.\n" * 2000
    body = upload_copied(app, client, owner, project_id, "returns.md", content)
    assert body["openai"]["status"] == "synced", body["openai"]
    (call,) = fake.calls("files")
    assert call.files["file"]["content"] == content
    # Bytes gone from the store: a copy says so on the row instead of failing anything.
    (row,) = rows(app)
    app.extensions["storage"].delete(project_id, row.stored_name)
    with app.app_context():
        from app.files.copies import copy_file
        from app.models import StoredFile

        db.session.execute(
            update(StoredFile).where(StoredFile.id == row.id).values(sync_status="pending")
        )
        db.session.commit()
        assert copy_file(row.id) is True
        failed = db.session.get(StoredFile, row.id)
        assert failed.sync_status == "failed"
        assert (
            failed.sync_error
            == "The stored bytes of returns.md are missing, so nothing could be copied."
        )


@S3_ONLY
def test_readyz_reports_a_store_out_of_reach_without_going_unready(app, unreachable_app):
    resp = unreachable_app.test_client().get("/readyz")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["storage"].startswith("unavailable: head bucket prompthub-tests")
    assert app.test_client().get("/readyz").get_json()["checks"]["storage"] == "ok"
