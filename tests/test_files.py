"""Project files through the page and the API: storage, limits, types, names, downloads,
extraction, deletion. The OpenAI mirror and chat context are in their own modules."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from app.extensions import db
from app.filetypes import parse_extensions
from app.models import StoredFile
from tests.factories import make_project, wait_extracted
from tests.filehelp import (
    docx_bytes,
    fetch,
    files_page,
    folder,
    login,
    multipart,
    on_disk,
    rows,
    upload,
)
from tools.pdfs import blank_pdf, text_pdf


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, name="Docs bot")


# --- upload, list, download, delete --------------------------------------------------------


def test_api_upload_stores_bytes_under_a_generated_name(app, client, owner, project_id):
    content = b"# Notes\n\nShipping takes 3 days.\n"
    resp = upload(client, owner, project_id, "notes.md", content)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["name"] == "notes.md"
    assert body["size"] == len(content)
    assert body["content_type"] == "text/markdown"
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["text"] == {"status": "ok", "chars": len(content), "pages": None, "note": None}
    assert body["use_in_chat"] is False
    assert body["openai"]["status"] == "local"
    assert body["duplicate"] is False

    (row,) = rows(app)
    assert on_disk(app, project_id) == [row.stored_name]
    assert row.stored_name != "notes.md" and len(row.stored_name) == 32
    assert (folder(app, project_id) / row.stored_name).read_bytes() == content

    listed = client.get(f"/api/projects/{project_id}/files", headers=owner.headers).get_json()
    assert [f["name"] for f in listed["data"]] == ["notes.md"]
    one = client.get(f"/api/projects/{project_id}/files/{body['id']}", headers=owner.headers)
    assert one.get_json()["sha256"] == body["sha256"]


def test_download_by_id_and_by_name_is_an_attachment(app, client, owner, project_id):
    content = "Prix: 12 €\n".encode()
    file_id = upload(client, owner, project_id, "prix.txt", content).get_json()["id"]
    api = fetch(
        client, f"/api/projects/{project_id}/files/{file_id}/download", headers=owner.headers
    )
    login(client, owner)
    page = fetch(client, f"/projects/{project_id}/files/prix.txt")
    for resp in (api, page):
        assert resp.status_code == 200
        assert resp.data == content
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        assert "prix.txt" in resp.headers["Content-Disposition"]
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "content", "content_type"),
    [
        ("page.html", b"<html><script>alert(1)</script></html>", "text/html; charset=utf-8"),
        (
            "logo.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
            "image/svg+xml",
        ),
    ],
)
def test_html_and_svg_are_downloaded_never_rendered(
    app, client, owner, project_id, name, content, content_type
):
    body = upload(client, owner, project_id, name, content).get_json()
    assert body["content_type"] == content_type.split(";")[0]
    login(client, owner)
    resp = fetch(client, f"/projects/{project_id}/files/{name}")
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Content-Type"].startswith(content_type)


def test_delete_removes_row_and_bytes(app, client, owner, project_id):
    file_id = upload(client, owner, project_id, "a.txt", b"alpha").get_json()["id"]
    assert len(on_disk(app, project_id)) == 1
    resp = client.delete(f"/api/projects/{project_id}/files/{file_id}", headers=owner.headers)
    assert resp.status_code == 204
    assert rows(app) == []
    assert on_disk(app, project_id) == []
    again = client.get(f"/api/projects/{project_id}/files/{file_id}", headers=owner.headers)
    assert again.status_code == 404


def test_page_delete_asks_first(app, client, owner, project_id):
    file_id = upload(client, owner, project_id, "a.txt", b"alpha").get_json()["id"]
    login(client, owner)
    confirm = client.get(f"/projects/{project_id}/files/{file_id}/delete")
    assert confirm.status_code == 200 and "Delete “a.txt”?" in confirm.get_data(as_text=True)
    assert len(rows(app)) == 1
    resp = client.post(f"/projects/{project_id}/files/{file_id}/delete")
    assert resp.status_code == 302
    assert "Deleted a.txt." in files_page(client, project_id)
    assert rows(app) == [] and on_disk(app, project_id) == []


def test_deleting_the_project_removes_its_files(app, client, owner, project_id):
    upload(client, owner, project_id, "a.txt", b"alpha")
    assert folder(app, project_id).exists()
    assert client.delete(f"/api/projects/{project_id}", headers=owner.headers).status_code == 204
    assert rows(app) == []
    assert not folder(app, project_id).exists()


def test_form_upload_takes_several_files_and_reports_each(app, client, owner, project_id):
    login(client, owner)
    resp = client.post(
        f"/projects/{project_id}/files",
        data={
            "file": [
                (io.BytesIO(b"one"), "one.txt"),
                (io.BytesIO(b"a,b\n1,2\n"), "table.csv"),
                (io.BytesIO(b"MZ\x90\x00"), "tool.exe"),
            ]
        },
        content_type="multipart/form-data",
    )
    assert resp.status_code == 302
    html = files_page(client, project_id)
    assert "Uploaded one.txt." in html and "Uploaded table.csv." in html
    assert ".exe is not an allowed file type" in html
    assert sorted(r.name for r in rows(app)) == ["one.txt", "table.csv"]
    assert 'id="upload-form"' in html


def test_files_list_is_json_for_api_clients_and_a_page_for_browsers(app, client, owner, project_id):
    upload(client, owner, project_id, "a.txt", b"alpha")
    login(client, owner)
    as_json = client.get(f"/projects/{project_id}/files")
    assert as_json.is_json and as_json.get_json()["data"][0]["name"] == "a.txt"
    assert "a.txt" in files_page(client, project_id)


# --- limits and types ------------------------------------------------------------------------


@pytest.fixture
def small_limit(app):
    app.config.update(MAX_UPLOAD_MB=1, MAX_CONTENT_LENGTH=1024 * 1024 + 64 * 1024)


def test_oversize_request_is_413_and_leaves_nothing(app, client, owner, project_id, small_limit):
    body, content_type = multipart("big.txt", b"x" * (2 * 1024 * 1024))
    resp = client.post(
        f"/api/projects/{project_id}/files",
        data=body,
        content_type=content_type,
        headers=owner.headers,
    )
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "payload_too_large"
    assert "1 MB" in resp.get_json()["error"]["message"]
    assert rows(app) == [] and on_disk(app, project_id) == []


def test_oversize_file_within_the_framing_margin_is_413_too(
    app, client, owner, project_id, small_limit
):
    body, content_type = multipart("big.txt", b"x" * (1024 * 1024 + 10))
    resp = client.post(
        f"/api/projects/{project_id}/files",
        data=body,
        content_type=content_type,
        headers=owner.headers,
    )
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "file_too_large"
    assert rows(app) == [] and on_disk(app, project_id) == []


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("setup.exe", b"MZ\x90\x00binary", ".exe is not an allowed file type"),
        ("README", b"plain", "files without an extension"),
        ("photo.png", b"<svg onload=alert(1)>", "not a .png file"),
        ("notes.txt", b"\x89PNG\r\n\x1a\n\x00\x00", "must be UTF-8 text"),
        ("report.pdf", b"just text pretending", "not a .pdf file"),
        ("data.csv", b"\xff\xfe\x00a\x00b", "must be UTF-8 text"),
    ],
)
def test_disallowed_or_mismatched_types_are_415(app, client, owner, project_id, name, content, why):
    resp = upload(client, owner, project_id, name, content)
    assert resp.status_code == 415, resp.get_json()
    assert resp.get_json()["error"]["code"] == "file_type_not_allowed"
    assert why in resp.get_json()["error"]["message"]
    assert rows(app) == [] and on_disk(app, project_id) == []


def test_allowed_types_are_configurable(app, client, owner, project_id):
    app.config["UPLOAD_ALLOWED_EXTENSIONS"] = (".md",)
    assert upload(client, owner, project_id, "a.md", b"# hi").status_code == 201
    assert upload(client, owner, project_id, "a.txt", b"hi").status_code == 415


# --- types added with UPLOAD_ALLOWED_EXTENSIONS ----------------------------------------------


@pytest.fixture
def added(app):
    """The built-in types plus .docx and .zip, parsed as the setting would be."""
    app.config["UPLOAD_ALLOWED_EXTENSIONS"] = parse_extensions("builtin,.docx,.zip")


def test_an_added_type_is_stored_as_it_is_without_text(app, client, owner, project_id, added):
    content = docx_bytes()
    resp = upload(client, owner, project_id, "Report.DOCX", content)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["name"] == "Report.docx"
    assert body["content_type"] == "application/octet-stream"
    assert body["size"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["text"] == {
        "status": "none",
        "chars": 0,
        "pages": None,
        "note": "No text is read from this type; the file is kept as it is.",
    }
    (row,) = rows(app)
    assert (folder(app, project_id) / row.stored_name).read_bytes() == content
    listed = client.get(f"/api/projects/{project_id}/files", headers=owner.headers).get_json()
    assert [(f["name"], f["content_type"]) for f in listed["data"]] == [
        ("Report.docx", "application/octet-stream")
    ]


def test_an_added_type_downloads_byte_identical_as_an_opaque_attachment(
    app, client, owner, project_id, added
):
    content = b"PK\x03\x04" + bytes(range(256)) * 4  # any bytes at all: nothing is checked
    file_id = upload(client, owner, project_id, "bundle.zip", content).get_json()["id"]
    api = fetch(
        client, f"/api/projects/{project_id}/files/{file_id}/download", headers=owner.headers
    )
    login(client, owner)
    page = fetch(client, f"/projects/{project_id}/files/bundle.zip")
    for resp in (api, page):
        assert resp.status_code == 200
        assert resp.data == content
        assert resp.headers["Content-Disposition"] == "attachment; filename=bundle.zip"
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in resp.headers["Content-Security-Policy"]


def test_an_added_type_is_never_used_in_chat(app, client, owner, project_id, added):
    file_id = upload(client, owner, project_id, "report.docx", docx_bytes()).get_json()["id"]
    resp = client.patch(
        f"/api/projects/{project_id}/files/{file_id}",
        json={"use_in_chat": True},
        headers=owner.headers,
    )
    assert resp.status_code == 422
    error = resp.get_json()["error"]
    assert error["code"] == "file_has_no_text"
    assert error["message"] == (
        "report.docx cannot be used in chat: No text is read from this type; the file is "
        "kept as it is."
    )
    login(client, owner)
    client.post(f"/projects/{project_id}/files/{file_id}/chat", data={"use": "1"})
    html = files_page(client, project_id)
    assert "report.docx cannot be used in chat" in html  # the page's flash
    assert f'action="/projects/{project_id}/files/{file_id}/chat"' not in html  # not offered
    assert "No text for chat" in html
    assert rows(app)[0].use_in_chat is False


def test_an_added_type_uploads_through_the_page_form(app, client, owner, project_id, added):
    login(client, owner)
    html = files_page(client, project_id)
    assert "Also .docx, .zip, kept as they are (no text for chat)." in html
    assert ".docx" in html.split('accept="', 1)[1].split('"', 1)[0]
    resp = client.post(
        f"/projects/{project_id}/files",
        data={"file": [(io.BytesIO(docx_bytes()), "plan.docx"), (io.BytesIO(b"MZ"), "x.exe")]},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 302
    html = files_page(client, project_id)
    assert "Uploaded plan.docx." in html
    assert "x.exe: .exe is not an allowed file type." in html
    assert [r.name for r in rows(app)] == ["plan.docx"]


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("setup.exe", b"MZ\x90\x00binary", ".exe is not an allowed file type."),
        ("notes.txt", docx_bytes(), "A .txt file must be UTF-8 text; this one is binary."),
        ("photo.png", b"<svg onload=alert(1)>", "The content is not a .png file."),
    ],
)
def test_with_added_types_others_are_still_refused_and_built_ins_still_checked(
    app, client, owner, project_id, added, name, content, why
):
    resp = upload(client, owner, project_id, name, content)
    assert resp.status_code == 415
    assert resp.get_json()["error"] == {
        "code": "file_type_not_allowed",
        "message": f"{name}: {why}",
        "fields": {"file": why},
    }
    assert rows(app) == [] and on_disk(app, project_id) == []


def test_only_added_types_can_be_allowed(app, client, owner, project_id):
    app.config["UPLOAD_ALLOWED_EXTENSIONS"] = parse_extensions(".docx")
    assert upload(client, owner, project_id, "a.docx", docx_bytes()).status_code == 201
    assert upload(client, owner, project_id, "a.txt", b"hi").status_code == 415
    login(client, owner)
    assert "Types: .docx, kept as they are (no text for chat)." in files_page(client, project_id)


def test_empty_file_is_422(app, client, owner, project_id):
    resp = upload(client, owner, project_id, "empty.txt", b"")
    assert resp.status_code == 422
    assert resp.get_json()["error"]["code"] == "file_empty"
    assert rows(app) == [] and on_disk(app, project_id) == []


@pytest.mark.parametrize("count", [0, 2])
def test_api_upload_needs_exactly_one_file(client, owner, project_id, count):
    parts = [(io.BytesIO(b"x"), f"{i}.txt") for i in range(count)]
    resp = client.post(
        f"/api/projects/{project_id}/files",
        data={"file": parts} if parts else {},
        headers=owner.headers,
        content_type="multipart/form-data",
    )
    assert resp.status_code == 422
    assert "file" in resp.get_json()["error"]["fields"]


# An upload takes only `file` (and a form's `csrf_token`): anything else is named, not ignored
# (issue 26, finding 10).
UNKNOWN_FIELDS = [  # the extra fields made fresh for each test (a sent file is closed)
    pytest.param(lambda: {"purpose": "assistants"}, ["purpose"], id="text-field"),
    pytest.param(
        lambda: {"files": (io.BytesIO(b"b"), "b.txt")}, ["files"], id="misspelt-file-field"
    ),
    pytest.param(
        lambda: {"use_in_chat": "1", "note": "x"}, ["note", "use_in_chat"], id="two-fields"
    ),
]


@pytest.mark.parametrize(("extra", "named"), UNKNOWN_FIELDS)
def test_api_upload_with_an_unknown_field_is_422_naming_it(
    app, client, owner, project_id, extra, named
):
    resp = client.post(
        f"/api/projects/{project_id}/files",
        data={"file": (io.BytesIO(b"alpha"), "a.txt"), **extra()},
        headers=owner.headers,
        content_type="multipart/form-data",
    )
    assert resp.status_code == 422
    error = resp.get_json()["error"]
    assert sorted(error["fields"]) == named
    assert all(f"`{name}`" in error["message"] for name in named)
    assert "`file`" in error["message"]  # what to send instead
    assert rows(app) == [] and on_disk(app, project_id) == []


@pytest.mark.parametrize(("extra", "named"), UNKNOWN_FIELDS)
def test_form_upload_with_an_unknown_field_stores_nothing_and_names_it(
    app, client, owner, project_id, extra, named
):
    login(client, owner)
    resp = client.post(
        f"/projects/{project_id}/files",
        data={"file": (io.BytesIO(b"alpha"), "a.txt"), **extra()},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 302
    html = files_page(client, project_id)
    assert all(f"<code>{name}</code>" in html or f"`{name}`" in html for name in named)
    assert rows(app) == [] and on_disk(app, project_id) == []


def test_an_unknown_field_on_another_users_project_is_still_404(app, client, project_id):
    from tests.factories import make_user

    stranger = make_user(app)
    resp = client.post(
        f"/api/projects/{project_id}/files",
        data={"file": (io.BytesIO(b"alpha"), "a.txt"), "purpose": "x"},
        headers=stranger.headers,
        content_type="multipart/form-data",
    )
    assert resp.status_code == 404


def test_images_are_accepted_by_their_bytes(app, client, owner, project_id):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    body = upload(client, owner, project_id, "Shot.PNG", png).get_json()
    assert body["name"] == "Shot.png"
    assert body["content_type"] == "image/png"
    assert body["text"]["status"] == "none"


# --- duplicates and names --------------------------------------------------------------------


def test_same_bytes_twice_are_stored_once(app, client, owner, project_id):
    first = upload(client, owner, project_id, "a.txt", b"same bytes")
    second = upload(client, owner, project_id, "copy.txt", b"same bytes")
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.get_json()["duplicate"] is True
    assert second.get_json()["id"] == first.get_json()["id"]
    assert second.get_json()["name"] == "a.txt"
    assert len(rows(app)) == 1 and len(on_disk(app, project_id)) == 1


def test_same_bytes_in_another_project_are_separate(app, client, owner, project_id):
    other = make_project(app, owner, name="Other")
    assert upload(client, owner, project_id, "a.txt", b"same").status_code == 201
    assert upload(client, owner, other, "a.txt", b"same").status_code == 201


def test_same_name_other_content_is_numbered(app, client, owner, project_id):
    names = [
        upload(client, owner, project_id, "notes.txt", f"v{i}".encode()).get_json()["name"]
        for i in range(3)
    ]
    assert names == ["notes.txt", "notes (2).txt", "notes (3).txt"]
    login(client, owner)
    assert fetch(client, f"/projects/{project_id}/files/notes (2).txt").data == b"v1"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\x.txt", "x.txt"),
        ("/abs/path/a.md", "a.md"),
        (".hidden.txt", "hidden.txt"),
        ("résumé 日本語 ✓.md", "résumé 日本語 ✓.md"),
        ("<img src=x onerror=alert(1)>.txt", "img src=x onerror=alert(1).txt"),
        ("tab\there.txt", "tab here.txt"),
        ("a:b|c?d*e.txt", "abcde.txt"),
    ],
)
def test_names_are_cleaned_and_never_used_as_paths(app, client, owner, project_id, raw, shown):
    resp = upload(client, owner, project_id, raw, f"content of {raw}".encode())
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["name"] == shown
    (row,) = rows(app)
    stored = folder(app, project_id) / row.stored_name
    assert stored.resolve().parent == folder(app, project_id).resolve()
    assert sorted(Path(app.config["UPLOAD_DIR"]).rglob("*")) == [folder(app, project_id), stored]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\u202egnp.txt", "gnp.txt"),  # shown as "txt.png" while the override is in it
        (
            "\u202aembedded\u202b and\u202c\u202d overridden\u202e.txt",
            "embedded and overridden.txt",
        ),
        ("a\u2066b\u2069c\u200ed\u200f.md", "abcd.md"),
        ("zero\u200bwidth\u200c\u200d\u2060\ufeff.txt", "zerowidth.txt"),
        ("notes.t\u200bxt", "notes.txt"),  # the extension check sees the real extension
    ],
)
def test_invisible_format_characters_are_removed_from_names(
    app, client, owner, project_id, raw, shown
):
    resp = upload(client, owner, project_id, raw, b"plain text")
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["name"] == shown
    assert resp.get_json()["content_type"] in ("text/plain", "text/markdown")
    (row,) = rows(app)
    assert row.name == shown


def test_very_long_names_are_shortened_keeping_the_extension(app, client, owner, project_id):
    body = upload(client, owner, project_id, "x" * 400 + ".md", b"# long").get_json()
    assert len(body["name"]) == 200 and body["name"].endswith(".md")


def test_unicode_names_download_with_an_encoded_header(app, client, owner, project_id):
    upload(client, owner, project_id, "日本語.txt", "こんにちは".encode())
    login(client, owner)
    resp = fetch(client, f"/projects/{project_id}/files/日本語.txt")
    assert resp.status_code == 200
    assert "filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt" in resp.headers["Content-Disposition"]


@pytest.mark.parametrize(
    "path", ["..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "%2E%2E%2Fsecret_key", "..%5Cx.txt"]
)
def test_traversal_in_download_names_finds_nothing(app, client, owner, project_id, path):
    upload(client, owner, project_id, "a.txt", b"alpha")
    login(client, owner)
    resp = fetch(client, f"/projects/{project_id}/files/{path}")
    assert resp.status_code == 404


# --- extraction and "use in chat" --------------------------------------------------------------


def extracted(client, owner, project_id, name, content) -> dict:
    """Upload a PDF: the answer says "pending"; then wait for the sandbox's outcome."""
    resp = upload(client, owner, project_id, name, content)
    assert resp.status_code == 201
    assert resp.get_json()["text"]["status"] == "pending"
    return wait_extracted(client, owner.headers, project_id, resp.get_json()["id"])


def test_pdf_text_is_extracted_with_its_pages(app, client, owner, project_id):
    body = extracted(client, owner, project_id, "guide.pdf", text_pdf("Refunds in 30 days", "P2"))
    assert body["content_type"] == "application/pdf"
    assert body["text"]["status"] == "ok"
    assert body["text"]["pages"] == 2
    with app.app_context():
        row = db.session.get(StoredFile, body["id"])
        assert row.text == "Refunds in 30 days\n\nP2"
        assert row.text_chars == len(row.text)


def test_scanned_pdf_says_so_and_cannot_be_used_in_chat(app, client, owner, project_id):
    body = extracted(client, owner, project_id, "scan.pdf", blank_pdf(3))
    assert body["text"]["status"] == "empty"
    assert body["text"]["pages"] == 3
    assert "scanned" in body["text"]["note"]
    resp = client.patch(
        f"/api/projects/{project_id}/files/{body['id']}",
        json={"use_in_chat": True},
        headers=owner.headers,
    )
    assert resp.status_code == 422
    assert resp.get_json()["error"]["code"] == "file_has_no_text"
    assert "scanned" in resp.get_json()["error"]["message"]


def test_broken_pdf_is_kept_but_marked_unreadable(app, client, owner, project_id):
    body = extracted(client, owner, project_id, "broken.pdf", b"%PDF-1.4\nnot really")
    assert body["text"]["status"] == "failed"
    assert body["text"]["note"] == "The PDF could not be read."


def test_whitespace_only_text_file_is_empty(app, client, owner, project_id):
    body = upload(client, owner, project_id, "blank.txt", b" \n\t\n").get_json()
    assert body["text"]["status"] == "empty"


def test_use_in_chat_toggles_through_api_and_page(app, client, owner, project_id):
    file_id = upload(client, owner, project_id, "a.txt", b"alpha").get_json()["id"]
    on = client.patch(
        f"/api/projects/{project_id}/files/{file_id}",
        json={"use_in_chat": True},
        headers=owner.headers,
    )
    assert on.get_json()["use_in_chat"] is True
    login(client, owner)
    client.post(f"/projects/{project_id}/files/{file_id}/chat", data={"use": "0"})
    assert "a.txt is no longer used in chat." in files_page(client, project_id)
    assert rows(app)[0].use_in_chat is False


def test_use_in_chat_must_be_a_boolean(client, owner, project_id):
    file_id = upload(client, owner, project_id, "a.txt", b"alpha").get_json()["id"]
    resp = client.patch(
        f"/api/projects/{project_id}/files/{file_id}",
        json={"use_in_chat": "yes"},
        headers=owner.headers,
    )
    assert resp.status_code == 422


# --- pages -----------------------------------------------------------------------------------


def test_files_tab_shows_each_file_with_its_text_status(app, client, owner, project_id):
    extracted(client, owner, project_id, "guide.pdf", text_pdf("Hello"))
    extracted(client, owner, project_id, "scan.pdf", blank_pdf())
    login(client, owner)
    html = files_page(client, project_id)
    assert "guide.pdf" in html and "scan.pdf" in html
    assert "5 chars, 1 page" in html
    assert "No text layer — a scanned PDF?" in html
    assert 'aria-current="page">Files</a>' in html


def test_file_names_are_escaped_on_the_page(app, client, owner, project_id):
    upload(client, owner, project_id, "Tom & Jerry's <notes>.txt", b"payload")
    login(client, owner)
    html = files_page(client, project_id)
    assert "Tom &amp; Jerry&#39;s notes.txt" in html
