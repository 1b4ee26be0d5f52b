"""The database goes away under a running server: every request answers 503 with
``Retry-After`` (JSON ``database_unavailable`` under ``/api/``, a page elsewhere), never a 500,
and the server recovers on its own when the database is back.

The database is a private PostgreSQL started in a temporary directory for this module (never the
shared one), on its own port; the app runs under gunicorn, migrated with ``flask db upgrade``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing

import httpx
import pytest

from tools.servers import PG_BINS, PrivatePostgres, free_port, gunicorn, migrate, server_env

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not PG_BINS, reason="PostgreSQL server binaries not installed"),
]
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def database() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.remove()


@pytest.fixture(scope="module")
def server(database, tmp_path_factory):
    env = server_env(database.url, free_port(), UPLOAD_DIR=str(tmp_path_factory.mktemp("up")))
    migrate(env)
    with gunicorn(env, tmp_path_factory.mktemp("gunicorn"), ready="/readyz") as running:
        yield running


def logged_in(base: str, email: str) -> httpx.Client:
    """A browser-like client with a session cookie (CSRF token read from the page)."""
    client = httpx.Client(base_url=base, trust_env=False, timeout=30)
    page = client.get("/register").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    form = {"email": email, "password": PASSWORD, "confirm": PASSWORD, "csrf_token": token}
    if client.post("/register", data=form).status_code != 302:
        client.close()
        raise AssertionError("registering through the page failed")
    return client


def test_database_down_is_503_with_retry_after_and_recovers(server, database):
    with (
        httpx.Client(base_url=server.base, trust_env=False, timeout=30) as api,
        closing(logged_in(server.base, "page@example.com")) as browser,
    ):
        r = api.post("/api/auth/register", json={"email": "down@example.com", "password": PASSWORD})
        assert r.status_code == 201, r.text
        bearer = {"Authorization": f"Bearer {r.json()['token']}"}
        assert browser.get("/").status_code == 200
        assert api.get("/readyz/node").json() == {"status": "ok", "checks": {"schema": "ok"}}

        database.stop()
        try:
            answers = {
                "api list": api.get("/api/projects", headers=bearer),
                "api login": api.post(
                    "/api/auth/login", json={"email": "down@example.com", "password": PASSWORD}
                ),
                "api register": api.post(
                    "/api/auth/register", json={"email": "new@example.com", "password": PASSWORD}
                ),
                "page": browser.get("/"),
                "page's API call": browser.get("/api/projects"),
            }
            for name, resp in answers.items():
                assert resp.status_code == 503, (name, resp.status_code, resp.text[:300])
                assert int(resp.headers["Retry-After"]) > 0, name
                assert "no-store" in resp.headers["Cache-Control"], name
            for name in ("api list", "api login", "api register", "page's API call"):
                assert answers[name].json()["error"]["code"] == "database_unavailable"
            page = answers["page"]
            assert page.headers["content-type"].startswith("text/html")
            assert "try again" in page.text.lower()
            assert api.get("/readyz").status_code == 503
            # The load balancer's check: this node still serves (its 503s above), so it stays in.
            node = api.get("/readyz/node")
            assert node.status_code == 200 and node.json()["checks"]["schema"].startswith("ok")
            assert api.get("/healthz").status_code == 200
            assert api.get("/login").status_code == 200  # needs no database
        finally:
            database.start()

        assert api.get("/api/projects", headers=bearer).status_code == 200
        assert browser.get("/").status_code == 200
    log = server.log()
    assert "Traceback" not in log, log[-3000:]
