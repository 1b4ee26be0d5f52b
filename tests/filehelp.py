"""Helpers for the tests of project files and for every test module that uploads one: uploads
through the API, hand-built multipart bodies, the files page, what is on disk and in the
database."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from app.extensions import db
from app.models import StoredFile


def upload(client, owner, project_id, name, content: bytes, **kw):
    return client.post(
        f"/api/projects/{project_id}/files",
        data={"file": (io.BytesIO(content), name)},
        headers=owner.headers,
        content_type="multipart/form-data",
        **kw,
    )


def settled(app) -> None:
    """Wait until this process's queue has run its jobs (an OpenAI copy, an extraction)."""
    assert app.extensions["jobs"].wait_idle(10), "a job did not end"


def copied(app, client, owner, project_id, file_id) -> dict:
    """The file's JSON once its OpenAI copy (a job: ``app/files/copies.py``) has ended."""
    settled(app)
    url = f"/api/projects/{project_id}/files/{file_id}"
    return client.get(url, headers=owner.headers).get_json()


def upload_copied(app, client, owner, project_id, name, content: bytes) -> dict:
    """Upload through the API (201), then the file's JSON once its OpenAI copy has ended."""
    resp = upload(client, owner, project_id, name, content)
    assert resp.status_code == 201, resp.get_json()
    return copied(app, client, owner, project_id, resp.get_json()["id"])


def multipart(name: str, content: bytes) -> tuple[bytes, str]:
    """A multipart body built by hand: the test client spools large bodies to a temporary file
    it never closes."""
    boundary = "----prompthub-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def fetch(client, url, **kw):
    """GET and close the response (downloads stream an open file)."""
    resp = client.get(url, **kw)
    resp.get_data()
    resp.close()
    return resp


def files_page(client, project_id) -> str:
    return fetch(client, f"/projects/{project_id}/files", headers={"Accept": "text/html"}).get_data(
        as_text=True
    )


def folder(app, project_id) -> Path:
    return Path(app.config["UPLOAD_DIR"]) / str(project_id)


def on_disk(app, project_id) -> list[str]:
    path = folder(app, project_id)
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def rows(app) -> list[StoredFile]:
    with app.app_context():
        return list(db.session.scalars(db.select(StoredFile).order_by(StoredFile.id)))


def login(client, user):
    client.post("/login", data={"email": user.email, "password": user.password})


def docx_bytes() -> bytes:
    """A real (tiny) .docx-like zip, with bytes no text check would pass (NULs)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document>Refunds: 30 days</w:document>")
    return buffer.getvalue()
