"""Hostile input: markup stored in every text field is escaped on every page that shows it;
NUL characters, malformed, oversized and mistyped bodies get clear 4xx answers, never a 500;
unicode edge cases round-trip."""

from __future__ import annotations

import io

import pytest

from tests.factories import make_file, make_project, make_user

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
]


@pytest.fixture
def owner(app):
    return make_user(app, email="ada@example.com", name="<script>alert('name')</script>")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_stored_markup_is_escaped_on_every_page(app, client, owner, payload):
    h = owner.headers
    project = client.post(
        "/api/projects",
        json={"name": f"P {payload}", "description": f"D {payload}", "system_prompt": payload},
        headers=h,
    ).get_json()
    pid = project["id"]
    client.post(
        f"/api/projects/{pid}/prompts",
        json={"content": f"v2 {payload}", "note": payload},
        headers=h,
    )
    chat = client.post(f"/api/projects/{pid}/chat", json={"message": payload}, headers=h)
    cid = chat.get_json()["conversation_id"]
    client.patch(f"/api/conversations/{cid}", json={"title": f"T {payload}"}, headers=h)
    make_file(app, owner, pid, name=f"{payload}.txt", content=b"x")

    client.post("/login", data={"email": owner.email, "password": owner.password})
    pages = [
        "/",
        f"/projects/{pid}",
        f"/projects/{pid}?c={cid}",
        f"/projects/{pid}/update",
        f"/projects/{pid}/delete",
        f"/projects/{pid}/prompts",
        f"/projects/{pid}/prompts/1",
        f"/projects/{pid}/prompts/2",
        f"/projects/{pid}/prompts/diff?from=1&to=2",
    ]
    for url in pages:
        resp = client.get(url)
        html = resp.get_data(as_text=True)
        assert resp.status_code == 200, url
        assert payload not in html, url
        assert "alert('name')</script>" not in html, url
    files = client.get(f"/projects/{pid}/files", headers={"Accept": "text/html"})
    assert "onerror=alert(1)>" not in files.get_data(as_text=True)
    assert "<svg onload" not in files.get_data(as_text=True)


def test_nul_characters_are_a_422_not_a_500(app, client, owner):
    resp = client.post("/api/projects", json={"name": "a\x00b"}, headers=owner.headers)
    assert resp.status_code == 422
    assert resp.get_json()["error"]["fields"] == {
        "name": "Must not contain NUL (\\u0000) characters."
    }
    pid = make_project(app, owner)
    chat = client.post(
        f"/api/projects/{pid}/chat", json={"message": "hi\x00"}, headers=owner.headers
    )
    assert chat.status_code == 422
    nested = client.post(
        f"/api/projects/{pid}/prompts", json={"content": ["x\x00"]}, headers=owner.headers
    )
    assert nested.status_code == 422


def test_nul_in_forms_and_query_strings_is_a_400(app, client, owner):
    client.post("/login", data={"email": owner.email, "password": owner.password})
    form = client.post("/projects/create", data={"name": "a\x00b"})
    assert form.status_code == 400
    assert client.post("/projects/create", data={"name": "x", "a\x00": "b"}).status_code == 400
    assert client.get("/?q=%00").status_code == 400
    assert client.get("/?q%00=1").status_code == 400  # in a name too


def test_nul_in_a_download_name_is_a_400_not_a_500(app, client, owner):
    # The name is looked up in the database: PostgreSQL text cannot hold NUL (it was a 500).
    pid = make_project(app, owner)
    make_file(app, owner, pid, name="ab.txt")
    client.post("/login", data={"email": owner.email, "password": owner.password})
    for name in ("a%00b.txt", "ab.txt%00", "%00"):
        resp = client.get(f"/projects/{pid}/files/{name}")
        assert resp.status_code == 400, name
    found = client.get(f"/projects/{pid}/files/ab.txt")
    assert found.status_code == 200
    found.close()


def test_text_files_with_nul_bytes_late_in_the_file_are_stored_without_them(app, client, owner):
    pid = make_project(app, owner)
    content = b"a" * 70_000 + b"\x00tail"  # past the 64 KiB type sniff
    resp = client.post(
        f"/api/projects/{pid}/files",
        data={"file": (io.BytesIO(content), "late.txt")},
        headers=owner.headers,
        content_type="multipart/form-data",
    )
    assert resp.status_code == 201
    assert resp.get_json()["text"]["chars"] == 70_004


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 400, "invalid_json"),
        (b"name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"name": "x"}', "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_malformed_and_mistyped_bodies(client, owner, body, content_type, status, code):
    resp = client.post("/api/projects", data=body, content_type=content_type, headers=owner.headers)
    assert resp.status_code == status
    assert resp.get_json()["error"]["code"] == code


def test_oversized_json_is_413(app, client, owner):
    big = '{"name": "' + "x" * (app.config["MAX_JSON_KB"] * 1024) + '"}'
    resp = client.post(
        "/api/projects", data=big, content_type="application/json", headers=owner.headers
    )
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "payload_too_large"


def test_wrong_json_types_are_field_errors(client, owner):
    resp = client.post("/api/projects", json={"name": 42}, headers=owner.headers)
    assert resp.status_code == 422
    assert "name" in resp.get_json()["error"]["fields"]


@pytest.mark.parametrize(
    "text",
    [
        "مرحبا بالعالم",  # right to left
        "👩🏽‍💻 🚀 emoji with ZWJ",
        "e\u0301 combining and \u200b zero width",
        "'; DROP TABLE projects; --",
        "Robert'); DELETE FROM users WHERE ('1'='1",
    ],
)
def test_unicode_and_sql_ish_text_round_trips(app, client, owner, text):
    created = client.post("/api/projects", json={"name": text}, headers=owner.headers)
    assert created.status_code == 201
    pid = created.get_json()["id"]
    assert client.get(f"/api/projects/{pid}", headers=owner.headers).get_json()["name"] == text
    assert len(client.get("/api/projects", headers=owner.headers).get_json()["data"]) == 1
