"""What a request body may be, decided per route before anything parses it.

A body is capped whether or not it declares its length: JSON routes at ``MAX_JSON_KB``, forms
and everything else at ``MAX_FORM_KB``, upload routes at the upload limit. Chunked bodies are
sent here as a WSGI server that terminates its input (gunicorn) hands them over: no
``Content-Length``, ``Transfer-Encoding: chunked``, ``wsgi.input_terminated`` set.
``tests/test_edge_server.py`` repeats the important cases through gunicorn itself. JSON is also
refused when it nests deeper than anything the API takes, before a parser recurses into it.
"""

from __future__ import annotations

import io
import json

import pytest

from app.edge import MAX_JSON_DEPTH
from app.extensions import db
from app.models import Project
from tests.factories import make_project
from tests.filehelp import multipart, rows


def chunked(client, url, body: bytes, content_type: str, **kw):
    """POST ``body`` the way gunicorn presents a chunked request to the app."""
    headers = {"Transfer-Encoding": "chunked", **kw.pop("headers", {})}
    return client.post(
        url,
        input_stream=io.BytesIO(body),
        content_type=content_type,
        headers=headers,
        environ_overrides={"wsgi.input_terminated": True},
        **kw,
    )


def json_of_size(size: int) -> bytes:
    """A valid project body padded to ``size`` bytes with whitespace (insignificant in JSON)."""
    head = b'{"name": "Big"'
    return head + b" " * (size - len(head) - 1) + b"}"


def deep(levels: int) -> str:
    return '{"email": "a@example.com", "password": "x", "pad": ' + "[" * levels + "]" * levels + "}"


# --- caps per route ------------------------------------------------------------------------------


def test_chunked_json_over_the_json_limit_is_413_and_nothing_is_stored(app, client, owner):
    limit = app.config["MAX_JSON_KB"] * 1024
    resp = chunked(
        client, "/api/projects", json_of_size(limit + 1), "application/json", headers=owner.headers
    )
    assert resp.status_code == 413
    error = resp.get_json()["error"]
    assert error["code"] == "payload_too_large"
    assert f"{app.config['MAX_JSON_KB']} KiB" in error["message"]
    with app.app_context():
        assert db.session.query(Project).count() == 0


def test_chunked_json_within_the_limit_is_accepted(app, client, owner):
    limit = app.config["MAX_JSON_KB"] * 1024
    resp = chunked(
        client, "/api/projects", json_of_size(limit), "application/json", headers=owner.headers
    )
    assert resp.status_code == 201, resp.get_json()


def test_anonymous_chunked_json_is_capped_too(app, client):
    body = json.dumps({"email": "a@example.com", "password": "x" * (300 * 1024)}).encode()
    resp = chunked(client, "/api/auth/login", body, "application/json")
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "payload_too_large"


def test_chunked_form_over_the_form_limit_is_a_413_page(app, client):
    body = b"email=a%40example.com&password=" + b"x" * (app.config["MAX_FORM_KB"] * 1024)
    resp = chunked(client, "/login", body, "application/x-www-form-urlencoded")
    assert resp.status_code == 413
    assert resp.mimetype == "text/html"
    assert f"{app.config['MAX_FORM_KB']} KiB" in resp.get_data(as_text=True)


def test_a_form_body_over_the_form_limit_with_a_length_is_413(app, client):
    body = b"email=a%40example.com&password=" + b"x" * (app.config["MAX_FORM_KB"] * 1024)
    resp = client.post("/login", data=body, content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 413


def test_the_longest_prompt_fits_the_form_limit_in_any_script(app, client, owner):
    """A form sends every non-ASCII character percent-encoded (up to 12 bytes for one
    character): the form limit must leave room for the longest prompt a page can save."""
    project_id = make_project(app, owner)
    client.post("/login", data={"email": owner.email, "password": owner.password})
    content = "😀" * app.config["PROMPT_MAX_CHARS"]
    resp = client.post(f"/projects/{project_id}/prompts", data={"content": content, "note": ""})
    assert resp.status_code == 302, resp.status_code


def test_upload_routes_keep_the_upload_limit_for_chunked_bodies(app, client, owner):
    project_id = make_project(app, owner)
    content = b"a" * (app.config["MAX_JSON_KB"] * 1024 * 2)  # well over the JSON limit
    body, content_type = multipart("big.txt", content)
    url = f"/api/projects/{project_id}/files"
    resp = chunked(client, url, body, content_type, headers=owner.headers)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["size"] == len(content)


def test_chunked_upload_over_the_request_limit_is_413(app, client, owner):
    app.config.update(MAX_UPLOAD_MB=1, MAX_CONTENT_LENGTH=1024 * 1024 + 64 * 1024)
    project_id = make_project(app, owner)
    body, content_type = multipart("big.txt", b"a" * (2 * 1024 * 1024))
    url = f"/api/projects/{project_id}/files"
    resp = chunked(client, url, body, content_type, headers=owner.headers)
    assert resp.status_code == 413
    error = resp.get_json()["error"]
    assert error["code"] == "payload_too_large" and "1 MB" in error["message"]
    assert rows(app) == []


def test_chunked_file_just_over_the_file_limit_is_file_too_large(app, client, owner):
    app.config.update(MAX_UPLOAD_MB=1, MAX_CONTENT_LENGTH=1024 * 1024 + 64 * 1024)
    project_id = make_project(app, owner)
    body, content_type = multipart("big.txt", b"a" * (1024 * 1024 + 1))
    url = f"/api/projects/{project_id}/files"
    resp = chunked(client, url, body, content_type, headers=owner.headers)
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "file_too_large"


# --- JSON nesting --------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 1000, 100_000])
def test_deeply_nested_json_is_refused_before_parsing(app, client, owner, levels):
    body = deep(levels)
    project_id = make_project(app, owner)
    answers = [
        client.post("/api/auth/login", data=body, content_type="application/json"),
        client.post(
            f"/api/projects/{project_id}/prompts",
            data=body,
            content_type="application/json",
            headers=owner.headers,
        ),
    ]
    for resp in answers:
        assert resp.status_code == 400, resp.status_code
        error = resp.get_json()["error"]
        assert error["code"] == "json_too_deep"
        assert str(MAX_JSON_DEPTH) in error["message"]


def test_deep_json_sent_to_a_page_is_a_400_not_a_500(app, client):
    # Flask-WTF reads a JSON body as form data: the page's form parses it.
    resp = client.post("/login", data=deep(5000), content_type="application/json")
    assert resp.status_code == 400


def test_json_nested_within_the_limit_and_brackets_in_strings_are_fine(app, client, owner):
    nested = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    body = '{"name": "[[[[{{{{\\"[[[[", "pad": ' + nested + "}"
    resp = client.post(
        "/api/projects", data=body, content_type="application/json", headers=owner.headers
    )
    # Parsed (no json_too_deep): the next check names the field the projects API does not take.
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["error"]["fields"] == {"pad": "This field is not part of this request."}
    body = '{"name": "[[[[{{{{\\"[[[[", "description": "]]]}}}"}'
    resp = client.post(
        "/api/projects", data=body, content_type="application/json", headers=owner.headers
    )
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["name"] == '[[[[{{{{"[[[['
