"""CORS for a browser app on another origin (``app/cors.py``): only ``/api``, only the origins
in ``CORS_ORIGINS``, preflights without authentication, never credentials; and cookies never
authorise a cross-origin request (``app/auth/loading.py``), even from an allowed origin."""

from __future__ import annotations

import pytest

from tests.factories import DEFAULT_PASSWORD, make_project, make_user

ALLOWED = "https://app.example.com"
IPV6 = "http://[::1]:3000"
API_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def config_overrides():
    return {"CORS_ORIGINS": f"{ALLOWED}, {IPV6}"}


def cors(resp) -> dict[str, str]:
    """The response's ``Access-Control-*`` headers. Whatever else a test checks, no response
    ever allows credentials."""
    found = {k: v for k, v in resp.headers.items() if k.lower().startswith("access-control-")}
    assert "Access-Control-Allow-Credentials" not in found, resp.request.path
    return found


def names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def preflight(client, path, *, origin=ALLOWED, method="POST", headers="authorization,content-type"):
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request_headers["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=request_headers)


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/projects", "POST"),
        ("/api/projects", "GET"),  # a GET with a bearer header is preflighted too
        ("/api/projects/1", "PATCH"),
        ("/api/projects/1/chat", "POST"),
        ("/api/messages/1/feedback", "PUT"),
        ("/api/auth/login", "POST"),
    ],
)
def test_a_preflight_from_an_allowed_origin_needs_no_authentication(raw_client, path, method):
    resp = preflight(raw_client, path, method=method)
    assert resp.status_code == 200
    headers = cors(resp)
    assert headers["Access-Control-Allow-Origin"] == ALLOWED
    assert set(names(headers["Access-Control-Allow-Methods"])) == API_METHODS
    assert names(headers["Access-Control-Allow-Headers"]) == ["authorization", "content-type"]
    assert headers["Access-Control-Max-Age"] == "7200"
    assert "Origin" in resp.vary


def test_a_preflight_asking_for_a_header_we_do_not_take_is_not_granted_it(raw_client):
    resp = preflight(raw_client, "/api/projects", headers="authorization,x-csrftoken")
    assert names(cors(resp)["Access-Control-Allow-Headers"]) == ["authorization"]


def test_the_headers_a_client_needs_are_allowed(raw_client):
    wanted = "authorization,content-type,last-event-id,x-request-id"
    resp = preflight(raw_client, "/api/turns/1/events", method="GET", headers=wanted)
    assert names(cors(resp)["Access-Control-Allow-Headers"]) == names(wanted)


def test_a_preflight_ignores_a_bearer_header(raw_client):
    resp = raw_client.options(
        "/api/projects",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "GET",
            "Authorization": "Bearer not-a-token",
        },
    )
    assert resp.status_code == 200
    assert cors(resp)["Access-Control-Allow-Origin"] == ALLOWED


def test_bearer_reads_and_writes_from_an_allowed_origin_work(app, raw_client):
    user = make_user(app)
    headers = {**user.headers, "Origin": ALLOWED}
    created = raw_client.post("/api/projects", json={"name": "Bot"}, headers=headers)
    assert created.status_code == 201
    assert cors(created)["Access-Control-Allow-Origin"] == ALLOWED
    listed = raw_client.get("/api/projects", headers=headers)
    assert listed.status_code == 200
    assert [p["name"] for p in listed.get_json()["data"]] == ["Bot"]
    exposed = names(cors(listed)["Access-Control-Expose-Headers"])
    assert {"Retry-After", "Content-Disposition", "X-Request-ID", "X-RateLimit-Reset"} <= set(
        exposed
    )
    assert "Origin" in listed.vary
    # The security headers are still there beside the CORS ones.
    assert listed.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in listed.headers["Content-Security-Policy"]
    assert "no-store" in listed.headers["Cache-Control"]


def test_an_ipv6_origin_matches_only_itself(app, raw_client):
    user = make_user(app)
    ours = raw_client.get("/api/projects", headers={**user.headers, "Origin": IPV6})
    assert cors(ours)["Access-Control-Allow-Origin"] == IPV6
    # Read as a regular expression, "[::1]" would match "1" or ":" instead.
    lookalike = raw_client.get("/api/projects", headers={**user.headers, "Origin": "http://1:3000"})
    assert cors(lookalike) == {}


def test_error_answers_carry_the_headers_so_the_page_can_read_them(app, raw_client):
    user = make_user(app)
    headers = {**user.headers, "Origin": ALLOWED}
    answers = [
        raw_client.get("/api/projects/999", headers=headers),  # 404
        raw_client.post("/api/projects", json={"name": ""}, headers=headers),  # 422
        raw_client.get("/api/projects", headers={"Origin": ALLOWED}),  # 401
        raw_client.get(
            "/api/projects", headers={"Origin": ALLOWED, "Authorization": "Bearer nope"}
        ),  # 401
    ]
    assert [r.status_code for r in answers] == [404, 422, 401, 401]
    for resp in answers:
        assert cors(resp)["Access-Control-Allow-Origin"] == ALLOWED
        assert "error" in resp.get_json()


def test_a_streamed_reply_carries_the_headers(app, raw_client):
    user = make_user(app)
    project_id = make_project(app, user)
    resp = raw_client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "Hello", "stream": True},
        headers={**user.headers, "Origin": ALLOWED},
    )
    assert resp.status_code == 200
    assert resp.mimetype == "text/event-stream"
    assert cors(resp)["Access-Control-Allow-Origin"] == ALLOWED
    assert "event: done" in resp.get_data(as_text=True)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "http://app.example.com",  # another scheme
        "https://app.example.com:8443",  # another port
        "null",
    ],
)
def test_a_refused_origin_gets_no_cors_headers(app, raw_client, origin):
    user = make_user(app)
    answered = preflight(raw_client, "/api/projects", origin=origin)
    assert answered.status_code == 200
    assert cors(answered) == {}
    # The server still answers a bearer request (a browser would hide it from the page).
    read = raw_client.get("/api/projects", headers={**user.headers, "Origin": origin})
    assert read.status_code == 200
    assert cors(read) == {}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/login"),
        ("OPTIONS", "/login"),
        ("GET", "/healthz"),
        ("GET", "/static/css/app.css"),
        ("GET", "/apiary"),  # only /api and /api/…
        ("OPTIONS", "/"),
    ],
)
def test_pages_never_get_cors_headers(client, method, path):
    resp = client.open(
        path, method=method, headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"}
    )
    assert cors(resp) == {}
    assert "Origin" not in resp.vary
    resp.close()


@pytest.fixture
def logged_in(app, client, auth):
    make_user(app, email="ada@example.com")
    auth.login()
    return client


@pytest.mark.parametrize("origin", [ALLOWED, "https://evil.example", "null"])
def test_a_session_cookie_never_authorises_a_cross_origin_request(logged_in, origin):
    assert logged_in.get("/api/projects").status_code == 200  # same origin: the cookie works
    resp = logged_in.get("/api/projects", headers={"Origin": origin})
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "unauthorized"
    # Pages too: the cookie does not count, so the page asks for a login.
    page = logged_in.get("/", headers={"Origin": origin})
    assert page.status_code == 302
    assert "/login" in page.headers["Location"]
    # Nothing was logged out: the same cookie still works from our own origin.
    assert logged_in.get("/api/auth/me", headers={"Origin": "http://localhost"}).status_code == 200
    assert logged_in.get("/api/auth/me").status_code == 200


def test_a_referer_from_another_site_does_not_drop_the_session(logged_in):
    """A link followed from another site is a navigation (no Origin header): still logged in."""
    resp = logged_in.get("/", headers={"Referer": "https://elsewhere.example/page"})
    assert resp.status_code == 200


def test_a_cross_origin_write_with_a_session_cookie_is_still_refused(logged_in):
    resp = logged_in.post("/api/projects", json={"name": "Bot"}, headers={"Origin": ALLOWED})
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "cross_origin"
    assert cors(resp)["Access-Control-Allow-Origin"] == ALLOWED
    assert logged_in.get("/api/projects").get_json()["data"] == []


def test_a_cross_origin_app_registers_and_logs_in_without_cookies(raw_client):
    headers = {"Origin": ALLOWED}
    body = {"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    registered = raw_client.post("/api/auth/register", json=body, headers=headers)
    assert registered.status_code == 201
    assert cors(registered)["Access-Control-Allow-Origin"] == ALLOWED
    logged = raw_client.post("/api/auth/login", json=body, headers=headers)
    assert logged.status_code == 200
    token = logged.get_json()["token"]
    me = raw_client.get("/api/auth/me", headers={**headers, "Authorization": f"Bearer {token}"})
    assert me.get_json()["user"]["email"] == "ada@example.com"


def test_an_options_request_that_is_not_a_preflight_needs_a_user(app, raw_client):
    assert raw_client.options("/api/projects").status_code == 401
    # An Origin alone (no Access-Control-Request-Method) is not a preflight either.
    assert raw_client.options("/api/projects", headers={"Origin": ALLOWED}).status_code == 401
    user = make_user(app)
    resp = raw_client.options("/api/projects", headers=user.headers)
    assert resp.status_code == 200
    assert {"GET", "POST"} <= set(names(resp.headers["Allow"]))


class TestRateLimits:
    @pytest.fixture
    def config_overrides(self):
        return {
            "CORS_ORIGINS": ALLOWED,
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_CHAT": "1 per minute",
        }

    def test_preflights_are_not_counted_and_a_429_is_readable(self, app, raw_client):
        user = make_user(app)
        path = f"/api/projects/{make_project(app, user)}/chat"
        # Counted per address, these would be refused from the second one on.
        assert [preflight(raw_client, path).status_code for _ in range(3)] == [200, 200, 200]
        headers = {**user.headers, "Origin": ALLOWED}
        assert raw_client.post(path, json={"message": "Hi"}, headers=headers).status_code == 200
        refused = raw_client.post(path, json={"message": "Hi"}, headers=headers)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        exposed = cors(refused)
        assert exposed["Access-Control-Allow-Origin"] == ALLOWED
        assert "Retry-After" in names(exposed["Access-Control-Expose-Headers"])


class TestAnyOrigin:
    @pytest.fixture
    def config_overrides(self):
        return {"CORS_ORIGINS": "*"}

    def test_any_origin_gets_a_literal_star_and_still_no_cookies(self, app, logged_in, raw_client):
        resp = preflight(raw_client, "/api/projects", origin="https://anything.example")
        assert cors(resp)["Access-Control-Allow-Origin"] == "*"
        user = make_user(app)
        read = raw_client.get(
            "/api/projects", headers={**user.headers, "Origin": "https://anything.example"}
        )
        assert read.status_code == 200
        assert cors(read)["Access-Control-Allow-Origin"] == "*"
        cookie_only = logged_in.get("/api/projects", headers={"Origin": "https://anything.example"})
        assert cookie_only.status_code == 401


class TestCorsOff:
    @pytest.fixture
    def config_overrides(self):
        return {}  # CORS_ORIGINS empty: the default

    def test_no_cors_headers_at_all(self, app, raw_client):
        user = make_user(app)
        answered = preflight(raw_client, "/api/projects")
        read = raw_client.get("/api/projects", headers={**user.headers, "Origin": ALLOWED})
        assert read.status_code == 200
        for resp in (answered, read):
            assert cors(resp) == {}
            assert "Origin" not in resp.vary
