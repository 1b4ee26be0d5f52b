"""Rate limits with Flask-Limiter, against in-process memory and the real Redis: login per
address and per account, register, chat and uploads per user; 429 with Retry-After, JSON on the
API and a page elsewhere; nothing is stored for a refused request."""

from __future__ import annotations

import io
import os
import uuid

import pytest

from app.extensions import db
from app.models import Message, StoredFile
from tests.factories import make_file, make_project, make_user

# A Redis database of its own (TEST_REDIS_URL), so parallel checkouts never share one.
REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(params=["memory://", REDIS])
def config_overrides(request):
    return {
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE_URI": request.param,
        # A fresh prefix per test: counts never leak between tests sharing one Redis.
        "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        "RATELIMIT_LOGIN": "3 per minute",
        "RATELIMIT_LOGIN_ACCOUNT": "2 per minute",
        "RATELIMIT_REGISTER": "2 per hour",
        "RATELIMIT_CHAT": "2 per minute",
        "RATELIMIT_UPLOAD": "2 per minute",
        "RATELIMIT_TURN_EVENTS": "3 per minute",
    }


def api_login(client, email, password="wrong password", ip="10.0.0.1"):
    return client.post(
        "/api/auth/login",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_login_is_limited_per_address(app, client):
    statuses = [api_login(client, f"user{i}@example.com").status_code for i in range(4)]
    assert statuses == [401, 401, 401, 429]
    blocked = api_login(client, "someone@example.com")
    assert blocked.status_code == 429
    assert blocked.get_json()["error"]["code"] == "rate_limited"
    assert int(blocked.headers["Retry-After"]) > 0
    # Another address is not affected.
    assert api_login(client, "user0@example.com", ip="10.0.0.2").status_code == 401


def test_login_is_limited_per_account_across_addresses(app, client):
    make_user(app, email="ada@example.com")
    statuses = [
        api_login(client, "ada@example.com", ip=f"10.0.1.{i}").status_code for i in range(3)
    ]
    assert statuses == [401, 401, 429]
    # Even the right password waits: the account is what is being guessed.
    right = api_login(client, "ADA@example.com", "correct horse battery", ip="10.0.2.1")
    assert right.status_code == 429


@pytest.mark.parametrize(
    ("registered", "spellings"),
    [
        (
            "ada@example.com",
            [
                "ada@example.com",
                " ADA@Example.COM ",
                "ada@ｅxample.com",  # fullwidth e in the domain
                "ａda@example.com",  # fullwidth a in the local part
                "ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ",  # all fullwidth, @ and dot included
            ],
        ),
        (
            "ada@bücher.example",
            ["ada@bücher.example", "ada@xn--bcher-kva.example", "Ada@BÜCHER.example"],
        ),
    ],
)
def test_every_spelling_of_an_email_counts_against_one_account(app, client, registered, spellings):
    make_user(app, email=registered)
    statuses = [
        api_login(client, email, ip=f"10.0.3.{i}").status_code for i, email in enumerate(spellings)
    ]
    assert statuses == [401, 401] + [429] * (len(spellings) - 2)


def test_the_account_limit_reads_no_body_before_the_size_check(app, client):
    """The per-account key comes from the parsed body, so it is counted after the view checked
    the body's size: an oversized body is a 413 without a byte of it being read."""
    size = app.config["MAX_JSON_KB"] * 1024 + 1

    body = io.BytesIO(b'{"email": "ada@example.com", "password": "' + b"x" * size + b'"}')
    resp = client.post(
        "/api/auth/login",
        input_stream=body,
        content_length=len(body.getvalue()),
        content_type="application/json",
    )
    assert resp.status_code == 413
    assert body.tell() == 0  # nothing of the body was read


def test_login_page_answers_429_as_a_page(app, client):
    for i in range(3):
        client.post("/login", data={"email": f"x{i}@example.com", "password": "nope"})
    resp = client.post("/login", data={"email": "y@example.com", "password": "nope"})
    assert resp.status_code == 429
    assert resp.mimetype == "text/html"
    assert "Too many requests" in resp.get_data(as_text=True)
    assert "Retry-After" in resp.headers
    assert client.get("/login").status_code == 200  # reading the form is not limited


def test_register_is_limited_per_address(app, client):
    def register(i):
        return client.post(
            "/api/auth/register",
            json={"email": f"new{i}@example.com", "password": "correct horse battery"},
        )

    assert [register(i).status_code for i in range(3)] == [201, 201, 429]


def test_the_account_limit_tells_nothing_about_whether_the_account_exists(app, client):
    """The per-account count applies to any well-formed address: its 429 comes as soon for an
    address with no account as for one with an account (issue 26, finding 9)."""
    make_user(app, email="ada@example.com")
    for email in ("ada@example.com", "nobody@example.com"):
        statuses = [api_login(client, email, ip=f"10.0.3.{i}").status_code for i in range(3)]
        assert statuses == [401, 401, 429]


def test_register_page_and_api_share_one_count_per_address(app, client):
    """Registering tells whether an email has an account (409 email_taken), so the limit is the
    bound on probing: the page must not add a second budget to the API's (issue 26, finding 9)."""
    here, elsewhere = {"REMOTE_ADDR": "10.0.2.1"}, {"REMOTE_ADDR": "10.0.2.2"}
    make_user(app, email="taken@example.com")
    probe = {"email": "taken@example.com", "password": "correct horse battery"}
    for _ in range(2):
        resp = client.post("/api/auth/register", json=probe, environ_base=here)
        assert resp.status_code == 409
    page = client.post("/register", data={**probe, "confirm": probe["password"]}, environ_base=here)
    assert page.status_code == 429
    assert page.mimetype == "text/html"
    api = client.post("/api/auth/register", json=probe, environ_base=here)
    assert api.status_code == 429
    # Another address has its own count, on either path.
    other_page = client.post(
        "/register", data={**probe, "confirm": probe["password"]}, environ_base=elsewhere
    )
    assert other_page.status_code == 422  # the form answers: the email is taken
    assert client.post("/api/auth/register", json=probe, environ_base=elsewhere).status_code == 409


def test_chat_is_limited_per_user_and_a_refused_message_is_not_stored(app, client):
    owner = make_user(app, email="ada@example.com")
    other = make_user(app, email="bob@example.com")
    project_id = make_project(app, owner)
    other_project = make_project(app, other)

    def chat(user, pid):
        return client.post(
            f"/api/projects/{pid}/chat", json={"message": "Hi"}, headers=user.headers
        )

    assert [chat(owner, project_id).status_code for _ in range(3)] == [200, 200, 429]
    assert chat(other, other_project).status_code == 200  # per user, not global
    with app.app_context():
        assert db.session.query(Message).filter_by(role="user").count() == 3


def test_uploads_are_limited_per_user(app, client):
    owner = make_user(app, email="ada@example.com")
    project_id = make_project(app, owner)

    def upload(i):
        return client.post(
            f"/api/projects/{project_id}/files",
            data={"file": (io.BytesIO(f"file {i}".encode()), f"f{i}.txt")},
            headers=owner.headers,
            content_type="multipart/form-data",
        )

    assert [upload(i).status_code for i in range(3)] == [201, 201, 429]


def test_regenerate_is_limited_per_user_like_chat(app, client):
    """Flask-Limiter counts per route, so Regenerate has its own RATELIMIT_CHAT budget (as the
    two chat routes each have); a refused request stores nothing."""
    owner = make_user(app, email="ada@example.com")
    project_id = make_project(app, owner)
    first = client.post(
        f"/api/projects/{project_id}/chat", json={"message": "Hi"}, headers=owner.headers
    )
    assert first.status_code == 200, first.get_json()
    cid = first.get_json()["conversation_id"]

    def regenerate():
        return client.post(f"/api/conversations/{cid}/regenerate", headers=owner.headers)

    assert [regenerate().status_code for _ in range(3)] == [200, 200, 429]
    with app.app_context():
        assert db.session.query(Message).filter_by(role="assistant").count() == 3


def test_attaching_to_a_turn_is_limited_per_user(app, client):
    """Readers of turn events count in the rate limits (issue 26): opening and dropping readers
    in a loop is bounded, for this user only."""

    def a_turn(user) -> int:
        project = make_project(app, user)
        reply = client.post(
            f"/api/projects/{project}/chat", json={"message": "Hi"}, headers=user.headers
        )
        return reply.get_json()["message"]["id"]

    ada, eve = make_user(app, email="ada@example.com"), make_user(app, email="eve@example.com")
    turn = a_turn(ada)
    statuses = [
        client.get(f"/api/turns/{turn}/events", headers=ada.headers).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    theirs = a_turn(eve)
    assert client.get(f"/api/turns/{theirs}/events", headers=eve.headers).status_code == 200


# --- uploads are counted per file, in one budget for every upload route --------------------


def form_upload(client, project_id, names):
    files = [(io.BytesIO(f"file {name}".encode()), name) for name in names]
    return client.post(
        f"/projects/{project_id}/files", data={"file": files}, content_type="multipart/form-data"
    )


def api_upload(client, user, project_id, name):
    return client.post(
        f"/api/projects/{project_id}/files",
        data={"file": (io.BytesIO(f"file {name}".encode()), name)},
        headers=user.headers,
        content_type="multipart/form-data",
    )


def stored_names(app) -> list[str]:
    with app.app_context():
        return sorted(f.name for f in db.session.scalars(db.select(StoredFile)))


def test_each_file_of_a_form_upload_counts_against_the_upload_limit(app, client):
    """RATELIMIT_UPLOAD is 2 here: a form of eight files stores two and names the others; the
    API then has nothing left this minute, while another user has their own budget."""
    owner = make_user(app, email="ada@example.com")
    project_id = make_project(app, owner)
    client.post("/login", data={"email": owner.email, "password": owner.password})

    names = [f"{letter}.txt" for letter in "abcdefgh"]
    assert form_upload(client, project_id, names).status_code == 302
    assert stored_names(app) == ["a.txt", "b.txt"]
    html = client.get(f"/projects/{project_id}/files", headers={"Accept": "text/html"}).text
    assert (
        "Not uploaded: c.txt, d.txt, e.txt, f.txt, g.txt and 1 more. You reached the upload "
        "limit (2 per minute, counted per file); try again in "
    ) in html
    assert api_upload(client, owner, project_id, "d.txt").status_code == 429

    other = make_user(app, email="bob@example.com")
    assert api_upload(client, other, make_project(app, other), "e.txt").status_code == 201


def test_the_page_and_the_api_share_one_upload_budget(app, client):
    owner = make_user(app, email="ada@example.com")
    project_id = make_project(app, owner)
    client.post("/login", data={"email": owner.email, "password": owner.password})
    assert form_upload(client, project_id, ["a.txt"]).status_code == 302
    assert api_upload(client, owner, project_id, "b.txt").status_code == 201
    refused = api_upload(client, owner, project_id, "c.txt")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "2 per minute, counted per file" in refused.get_json()["error"]["message"]
    assert stored_names(app) == ["a.txt", "b.txt"]


def test_a_spent_budget_refuses_before_any_file_is_stored(app, client):
    """The API refuses before reading the body; the page (whose CSRF check reads the form
    first) answers a 429 page before any file is looked at."""
    owner = make_user(app, email="ada@example.com")
    project_id = make_project(app, owner)
    for name in ("a.txt", "b.txt"):
        assert api_upload(client, owner, project_id, name).status_code == 201
    part = b'Content-Disposition: form-data; name="file"; filename="c.txt"\r\n\r\nc\r\n'
    body = io.BytesIO(b"--x\r\n" + part + b"--x--\r\n")
    resp = client.post(
        f"/api/projects/{project_id}/files",
        input_stream=body,
        content_length=len(body.getvalue()),
        content_type="multipart/form-data; boundary=x",
        headers=owner.headers,
    )
    assert resp.status_code == 429 and body.tell() == 0  # not a byte of the body was read
    client.post("/login", data={"email": owner.email, "password": owner.password})
    page = form_upload(client, project_id, ["c.txt", "d.txt"])
    assert page.status_code == 429 and "Too many requests" in page.text
    assert stored_names(app) == ["a.txt", "b.txt"]


def test_a_copy_to_openai_counts_as_an_upload(app, client):
    """Retrying a copy sends the file again: one file of the same budget (here without a key,
    each try is a 409, still counted)."""
    owner = make_user(app, email="ada@example.com")
    project_id = make_project(app, owner)
    file_id = make_file(app, owner, project_id)  # through the service: not counted
    sync = f"/api/projects/{project_id}/files/{file_id}/sync"
    statuses = [client.post(sync, headers=owner.headers).status_code for _ in range(3)]
    assert statuses == [409, 409, 429]
    assert api_upload(client, owner, project_id, "b.txt").status_code == 429
