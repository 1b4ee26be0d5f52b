"""The API keys page: a key is created with a form, shown once, listed by its prefix only,
and revoked with a button; the same rules as the JSON API (tests/test_compat.py)."""

from __future__ import annotations

import re

import pytest

from tests.factories import make_project, make_user

SECRET = re.compile(r'id="new-key-secret">(phk_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43})<')


@pytest.fixture
def logged_in(app, client, auth):
    auth.register()
    return client


def test_a_key_is_shown_once_then_listed_by_its_prefix(logged_in):
    made = logged_in.post("/keys", data={"name": "support widget", "scope": "chat"})
    assert made.status_code == 201
    page = made.get_data(as_text=True)
    secret = SECRET.search(page).group(1)
    assert "shown this once" in page
    assert made.headers["Cache-Control"] == "no-store"
    again = logged_in.get("/keys").get_data(as_text=True)
    assert secret not in again and secret[:12] + "…" in again and "support widget" in again
    # The key works on /v1 (its own test: test_compat.py); here, that it is a real key.
    listed = logged_in.get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert listed.status_code == 200


def test_form_errors_are_shown_next_to_the_fields(logged_in):
    resp = logged_in.post("/keys", data={"name": " ", "scope": "chat"})
    assert resp.status_code == 422
    assert "Name the key" in resp.get_data(as_text=True)
    resp = logged_in.post("/keys", data={"name": "x", "scope": "chat", "rate_per_minute": "0"})
    assert resp.status_code == 422
    assert logged_in.get("/keys").get_data(as_text=True).count("<code>phk_") == 0


def test_a_project_key_is_chosen_from_your_projects_only(app, logged_in):
    mine = make_project(app, make_user(app, email="eve@example.com"), name="Eve's bot")
    resp = logged_in.post("/keys", data={"name": "x", "scope": "chat", "project_id": str(mine)})
    assert resp.status_code == 422  # not among the form's choices
    assert "eves-bot" not in logged_in.get("/keys").get_data(as_text=True)


def test_revoke_refuses_the_key_from_its_next_request(logged_in):
    page = logged_in.post("/keys", data={"name": "ci", "scope": "read"}).get_data(as_text=True)
    secret = SECRET.search(page).group(1)
    headers = {"Authorization": f"Bearer {secret}"}
    assert logged_in.get("/api/projects", headers=headers).status_code == 200
    key_id = re.search(r'id="key-(\d+)"', page).group(1)
    done = logged_in.post(f"/keys/{key_id}/revoke", follow_redirects=True)
    assert "is revoked" in done.get_data(as_text=True)
    refused = logged_in.get("/api/projects", headers=headers)
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "key_revoked"
    assert "revoked</span>" in logged_in.get("/keys").get_data(as_text=True)


def test_the_account_menu_links_the_keys_page(logged_in):
    assert 'href="/keys"' in logged_in.get("/projects").get_data(as_text=True)
