"""Security headers on every response, request ids and the access log, health endpoints."""

from __future__ import annotations

import logging
import re
import secrets

import pytest
from flask import Flask
from sqlalchemy import text

from app import create_app
from app.extensions import db
from app.schema import read_heads
from tests.conftest import base_config, stamp_head
from tests.factories import make_file, make_project

EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def check_headers(resp):
    for name, value in EXPECTED.items():
        assert resp.headers.get(name) == value, (resp.request.path, name)
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp


def test_every_kind_of_response_carries_the_headers(app, client, owner):
    project_id = make_project(app, owner)
    anonymous = [
        client.get("/login"),
        client.get("/static/css/app.css"),
        client.get("/nope"),
        client.get("/healthz"),
        client.get("/api/projects"),  # 401 JSON
    ]
    client.post("/login", data={"email": owner.email, "password": owner.password})
    pages = [
        client.get("/"),
        client.get(f"/projects/{project_id}"),
        client.get(f"/projects/{project_id}/prompts"),
        client.get(f"/projects/{project_id}/files", headers={"Accept": "text/html"}),
        client.get("/api/projects", headers=owner.headers),
    ]
    for resp in anonymous + pages:
        check_headers(resp)
        resp.close()
    assert "Strict-Transport-Security" not in pages[0].headers  # plain HTTP


def test_hsts_only_over_https(app, client):
    resp = client.get("/login", base_url="https://localhost")
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_behind_a_trusted_proxy_forwarded_https_counts(database_url, tmp_path):
    app = create_app(base_config(database_url, TRUST_PROXY=True))
    resp = app.test_client().get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" in resp.headers
    untrusted = create_app(base_config(database_url))
    resp = untrusted.test_client().get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in resp.headers


def test_production_cookies_are_secure(database_url):
    app = create_app(
        base_config(
            database_url, APP_ENV="production", SECRET_KEY=secrets.token_urlsafe(48), TESTING=True
        )
    )
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_request_id_is_kept_when_sane_and_replaced_when_not(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == (
        "abc-123"
    )
    odd = client.get("/healthz", headers={"X-Request-ID": "<script>" + "x" * 100})
    assert len(odd.headers["X-Request-ID"]) == 32 and "<" not in odd.headers["X-Request-ID"]
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 32


def test_access_log_has_no_secrets_or_bodies(app, client, owner, caplog):
    caplog.set_level(logging.INFO, logger="prompthub.access")
    project_id = make_project(app, owner)
    client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "my secret plan"},
        headers={**owner.headers, "X-Request-ID": "req-42"},
    )
    client.post("/login", data={"email": owner.email, "password": owner.password})
    client.get("/?token=leaky-query-value")
    lines = [r.getMessage() for r in caplog.records if r.name == "prompthub.access"]
    chat_line = next(line for line in lines if "/chat" in line)
    assert "request_id=req-42" in chat_line
    assert f"path=/api/projects/{project_id}/chat" in chat_line
    assert "status=200" in chat_line and f"user={owner.id}" in chat_line
    text = "\n".join(lines)
    for secret in (owner.token, owner.password, "my secret plan", "leaky-query-value"):
        assert secret not in text


def test_readyz_checks_the_database(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json() == {
        "status": "ok",
        "checks": {"database": "ok", "schema": "ok", "storage": "ok"},
    }


def test_readyz_is_503_when_the_database_is_unreachable():
    app: Flask = create_app(base_config("postgresql://postgres@127.0.0.1:1/nowhere"))
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["status"] == "unavailable"
    assert app.test_client().get("/healthz").status_code == 200


def set_revisions(revisions: list[str] | None) -> None:
    """The database's ``alembic_version`` rows (``None``: no such table)."""
    db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
    if revisions is not None:
        db.session.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
        for revision in revisions:
            db.session.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": revision})
    db.session.commit()


@pytest.mark.parametrize("state", ["unmigrated", "behind"])
def test_readyz_and_the_node_check_are_503_on_a_database_behind_the_migrations(app, state):
    checker = app.extensions["schema_check"]
    (head,) = checker.heads
    older = sorted(checker.known - checker.heads)[-1]
    with app.app_context():
        set_revisions(None if state == "unmigrated" else [older])
    try:
        client = app.test_client()
        full, node = client.get("/readyz"), client.get("/readyz/node")
        expected = {
            "unmigrated": "not migrated: no revision in alembic_version; run `flask db upgrade`",
            "behind": f"behind: database at {older}, code at {head}; run `flask db upgrade`",
        }[state]
        assert full.status_code == 503 and node.status_code == 503
        assert full.get_json()["status"] == "unavailable"
        assert full.get_json()["checks"]["schema"] == expected
        assert full.get_json()["checks"]["database"] == "ok"
        assert node.get_json() == {"status": "unavailable", "checks": {"schema": expected}}

        with app.app_context():  # `flask db upgrade` ran: ready at the next check
            stamp_head(app)
        assert client.get("/readyz/node").get_json() == {"status": "ok", "checks": {"schema": "ok"}}
        assert client.get("/readyz").status_code == 200
    finally:
        with app.app_context():
            stamp_head(app)


def test_a_database_ahead_of_the_code_is_ready_as_in_a_rolling_deploy(app):
    (head,) = app.extensions["schema_check"].heads
    with app.app_context():
        set_revisions(["9999"])
    try:
        resp = app.test_client().get("/readyz")
        assert resp.status_code == 200 and resp.get_json()["status"] == "degraded"
        assert resp.get_json()["checks"]["schema"] == (
            f"ahead: database at 9999, newer than this code ({head})"
        )
        assert app.test_client().get("/readyz/node").status_code == 200
    finally:
        with app.app_context():
            stamp_head(app)


def test_the_node_check_stays_ready_while_the_database_is_unreachable():
    """Every node shares the database: its outage must not take every node out of the load
    balancer (the app answers 503 with Retry-After itself)."""
    app: Flask = create_app(base_config("postgresql://postgres@127.0.0.1:1/nowhere"))
    resp = app.test_client().get("/readyz/node")
    assert resp.status_code == 200
    assert resp.get_json() == {
        "status": "ok",
        "checks": {"schema": "unknown: the database does not answer"},
    }
    assert app.test_client().get("/readyz").status_code == 503


def test_the_code_heads_are_read_from_the_migration_files(tmp_path):
    """Two branches merged, and a branch left open: every revision no other one revises."""
    for name, revision, down in [
        ("a", "a1", None), ("b", "b1", "a1"), ("c", "c1", "a1"), ("m", "m1", ("b1", "c1")),
        ("d", "d1", "m1"), ("e", "e1", "m1"),
    ]:  # fmt: skip
        (tmp_path / f"{name}.py").write_text(
            f'"""{name}"""\nrevision = {revision!r}\ndown_revision = {down!r}\n'
        )
    heads, known = read_heads(tmp_path)
    assert heads == {"d1", "e1"} and known == {"a1", "b1", "c1", "m1", "d1", "e1"}


def access_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "prompthub.access"]


def test_control_characters_in_the_path_cannot_forge_log_lines(client, caplog):
    caplog.set_level(logging.INFO, logger="prompthub.access")
    forged = "request_id=forged method=GET path=/admin status=200 duration_ms=1.0 user=1"
    resp = client.get("/nope%0D%0A" + forged.replace(" ", "%20") + "%E2%80%AE")
    assert resp.status_code == 404
    (line,) = access_lines(caplog)
    assert "\n" not in line and "\r" not in line and "\u202e" not in line
    assert "path=/nope\\x0d\\x0arequest_id=forged\\x20method=GET\\x20path=/admin" in line
    assert re.search(r"user=1\\u202e status=404 duration_ms=[0-9.]+ user=-$", line), line
    assert line.count(" status=") == 1


def test_request_id_is_strict_about_what_it_keeps(client):
    # Straight into the environ: a test client refuses to send a newline in a header.
    for odd in ("abc\n", "abc\t", "a b", "x" * 65, "ünïcode"):
        resp = client.get("/healthz", environ_overrides={"HTTP_X_REQUEST_ID": odd})
        got = resp.headers["X-Request-ID"]
        assert resp.status_code == 200 and got != odd and len(got) == 32, repr(odd)


def test_requests_refused_early_get_a_request_id_in_the_header_and_the_log(
    app, client, owner, caplog
):
    caplog.set_level(logging.INFO, logger="prompthub.access")
    refused = [
        client.post("/projects/create", data={"name": "x"}, csrf=False),  # CSRF: 400
        client.get("/api/projects", headers={"Authorization": "Bearer nope"}),  # 401
        client.get("/?q=%00"),  # the input guard: 400
        client.get("/api/projects/99999999999"),  # the id converter: 404
    ]
    assert [r.status_code for r in refused] == [400, 401, 400, 404]
    lines = access_lines(caplog)
    assert len(lines) == len(refused)
    for resp, line in zip(refused, lines, strict=True):
        request_id = resp.headers["X-Request-ID"]
        assert len(request_id) == 32 and request_id != "-"
        assert f"request_id={request_id} " in line
    assert client.get("/healthz", headers={"X-Request-ID": "trace-7"}).headers["X-Request-ID"] == (
        "trace-7"
    )


def test_private_responses_are_never_stored_but_static_files_are_cached(app, client, owner):
    project_id = make_project(app, owner)
    file_id = make_file(app, owner, project_id)
    private = [
        client.get("/api/projects", headers=owner.headers),
        client.get(f"/api/projects/{project_id}/files/{file_id}/download", headers=owner.headers),
        client.get("/api/auth/me", headers=owner.headers),
        client.get("/api/projects"),  # 401
        client.get("/login"),  # carries the session's CSRF token
    ]
    client.post("/login", data={"email": owner.email, "password": owner.password})
    private += [
        client.get("/"),
        client.get(f"/projects/{project_id}"),
        client.get(f"/projects/{project_id}/files", headers={"Accept": "text/html"}),
    ]
    for resp in private:
        assert "no-store" in resp.headers.get("Cache-Control", ""), resp.request.path
        resp.close()
    static = client.get("/static/css/app.css")
    assert "no-store" not in static.headers.get("Cache-Control", "")
    static.close()
    document = client.get("/api/openapi.json")
    assert "no-store" not in document.headers.get("Cache-Control", "")


def test_maintenance_chores_say_once_that_the_database_is_away(caplog):
    """One line per chore when it starts failing for want of the database, no traceback, and
    nothing more while the outage lasts."""
    app: Flask = create_app(base_config("postgresql://postgres@127.0.0.1:1/nowhere"))
    caplog.set_level(logging.INFO, logger="app.maintenance")
    for _ in range(3):
        app.extensions["maintenance"].run_now()
    records = [r for r in caplog.records if r.name == "app.maintenance"]
    assert records, "no chore reached the database"
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in records)
    assert (
        len(records)
        == len({r.getMessage() for r in records})
        <= len(app.extensions["maintenance"].chores)
    )
    assert all("waits for the database: OperationalError" in r.getMessage() for r in records)
