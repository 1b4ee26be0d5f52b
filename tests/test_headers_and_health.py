"""Security headers on every response, request ids and the access log, health endpoints."""

from __future__ import annotations

import logging

from flask import Flask

from app import create_app
from tests.conftest import base_config
from tests.factories import make_project

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
        base_config(database_url, APP_ENV="production", SECRET_KEY="x" * 40, TESTING=True)
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
    assert resp.get_json() == {"status": "ok", "checks": {"database": "ok"}}


def test_readyz_is_503_when_the_database_is_unreachable():
    app: Flask = create_app(base_config("postgresql://postgres@127.0.0.1:1/nowhere"))
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["status"] == "unavailable"
    assert app.test_client().get("/healthz").status_code == 200
