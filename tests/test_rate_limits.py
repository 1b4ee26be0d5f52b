"""Rate limits with Flask-Limiter, against in-process memory and the real Redis: login per
address and per account, register, chat and uploads per user; 429 with Retry-After, JSON on the
API and a page elsewhere; nothing is stored for a refused request."""

from __future__ import annotations

import io
import uuid

import pytest

from app.extensions import db
from app.models import Message
from tests.factories import make_project, make_user

REDIS = "redis://127.0.0.1:6379/15"


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
