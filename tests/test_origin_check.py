"""Origin check beside the CSRF token: a cookie-authenticated write whose ``Origin`` (or, when
absent, ``Referer``) names another site is a 403; bearer requests and requests naming neither
are left to the token rules. (A cookie never authorises a request whose ``Origin`` is another
site at all: tests/test_cors.py.)"""

from __future__ import annotations

import pytest

from tests.factories import DEFAULT_PASSWORD, make_user


@pytest.fixture
def logged_in(app, client, auth):
    make_user(app, email="ada@example.com")
    auth.login()
    return client


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://localhost"},
        {"Origin": "HTTP://LOCALHOST:80"},
        {"Referer": "http://localhost/projects"},
        {},  # neither: the CSRF token alone decides
    ],
)
def test_same_origin_writes_pass(logged_in, headers):
    assert logged_in.post("/api/projects", json={"name": "Bot"}, headers=headers).status_code == 201


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://localhost:8080"},  # another port is another origin
        {"Origin": "https://localhost"},  # and another scheme
        {"Origin": "null"},  # an opaque origin (sandboxed frame, data: URL)
        {"Referer": "https://evil.example/attack.html"},
        {"Origin": "https://evil.example", "Referer": "http://localhost/"},
    ],
)
def test_cross_origin_api_writes_are_403_json(logged_in, headers):
    resp = logged_in.post("/api/projects", json={"name": "Bot"}, headers=headers)
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "cross_origin"
    assert logged_in.get("/api/projects").get_json()["data"] == []  # nothing was created


def test_cross_origin_form_posts_are_a_403_page(logged_in):
    resp = logged_in.post(
        "/projects/create",
        data={"name": "Bot", "description": ""},
        headers={"Origin": "https://evil.example"},
    )
    assert resp.status_code == 403
    assert resp.mimetype == "text/html"
    assert "another site" in resp.get_data(as_text=True)
    assert logged_in.get("/").status_code == 200  # still logged in: nothing was done


def test_cross_origin_login_form_is_refused(app, client):
    make_user(app, email="ada@example.com")
    resp = client.post(
        "/login",
        data={"email": "ada@example.com", "password": DEFAULT_PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert resp.status_code == 403


def test_reads_are_not_refused_but_a_foreign_origin_makes_them_anonymous(logged_in):
    """No 403 for reads; but cookies never authorise a request whose Origin is another site
    (tests/test_cors.py), so it is a 401, while a foreign Referer alone changes nothing."""
    resp = logged_in.get("/api/projects", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 401
    resp = logged_in.get("/api/projects", headers={"Referer": "https://evil.example/page"})
    assert resp.status_code == 200


def test_bearer_writes_are_unaffected(app, raw_client):
    user = make_user(app)
    headers = {**user.headers, "Origin": "https://evil.example"}
    resp = raw_client.post("/api/projects", json={"name": "Bot"}, headers=headers)
    assert resp.status_code == 201


class TestBehindATrustedProxy:
    @pytest.fixture
    def config_overrides(self):
        return {"TRUST_PROXY": True}

    def test_the_forwarded_scheme_and_host_are_our_origin(self, app, client):
        make_user(app, email="ada@example.com")
        forwarded = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "hub.example",
            # Over HTTPS Flask-WTF also wants a same-site Referer (WTF_CSRF_SSL_STRICT).
            "Referer": "https://hub.example/projects",
        }
        login = client.post(
            "/login",
            data={"email": "ada@example.com", "password": DEFAULT_PASSWORD},
            headers=forwarded,
        )
        assert login.status_code == 302
        ours = client.post(
            "/api/projects",
            json={"name": "Bot"},
            headers={**forwarded, "Origin": "https://hub.example"},
        )
        assert ours.status_code == 201
        theirs = client.post(
            "/api/projects",
            json={"name": "Bot"},
            headers={**forwarded, "Origin": "http://localhost"},
        )
        assert theirs.status_code == 403
