import logging
import os

import pytest

from app.extensions import db


def test_unknown_api_url_is_json_404(client):
    resp = client.get("/api/nothing-here")
    assert resp.status_code == 404
    err = resp.get_json()["error"]
    assert err["code"] == "not_found"
    assert set(err) == {"code", "message"}


def test_wrong_method_on_api_is_json_405(app, client):
    resp = client.put("/api/auth/login", json={})
    assert resp.status_code == 405
    assert resp.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]


def test_unknown_page_is_an_html_404(client):
    resp = client.get("/no-such-page")
    assert resp.status_code == 404
    assert resp.mimetype == "text/html"
    assert "404" in resp.get_data(as_text=True)


def test_unexpected_errors_show_no_details(app, client):
    @app.get("/api/boom")
    def boom():
        raise RuntimeError("secret internals")

    @app.get("/boom")
    def boom_page():
        raise RuntimeError("secret internals")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    api = client.get("/api/boom")
    assert api.status_code == 500
    assert api.get_json()["error"]["code"] == "internal_error"
    assert "secret internals" not in api.get_data(as_text=True)
    page = client.get("/boom")
    assert page.status_code == 500
    assert "secret internals" not in page.get_data(as_text=True)


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_a_database_out_of_reach_is_503_with_retry_after(caplog):
    """In process, on a PostgreSQL address nobody listens on; ``tests/test_database_down.py``
    stops a real one under gunicorn."""
    from app import create_app
    from tests.conftest import base_config

    app = create_app(base_config("postgresql://postgres@127.0.0.1:1/nowhere"))
    client = app.test_client()
    api = client.post("/api/auth/login", json={"email": "a@example.com", "password": "x" * 12})
    assert api.status_code == 503
    assert api.get_json()["error"]["code"] == "database_unavailable"
    assert int(api.headers["Retry-After"]) > 0
    with client.session_transaction() as session:
        session["_user_id"] = "1:0"  # a logged-in browser: the user is loaded from the database
    page = client.get("/")
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert "try again" in page.get_data(as_text=True).lower()
    assert page.headers["Retry-After"] == api.headers["Retry-After"]
    assert not [r for r in caplog.records if r.exc_info]  # one line each, no traceback


def test_a_database_that_hangs_is_503_within_the_connect_timeout():
    """A PostgreSQL address that accepts the connection and never answers (a stuck server, a
    full backlog): requests give up after ``DB_CONNECT_TIMEOUT_SECONDS`` with a 503 instead of
    waiting for the operating system's TCP timeout."""
    import socket
    import time

    from app import create_app
    from tests.conftest import base_config

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes handshakes; nothing ever reads or answers
        port = silent.getsockname()[1]
        app = create_app(
            base_config(f"postgresql://postgres@127.0.0.1:{port}/x", DB_CONNECT_TIMEOUT_SECONDS=1)
        )
        started = time.monotonic()
        resp = app.test_client().get("/readyz")
        waited = time.monotonic() - started
    assert resp.status_code == 503
    assert waited < 10  # libpq gave up; without a timeout this waits until the test dies


def test_the_access_log_names_a_user_whose_row_expired_without_asking_the_database(
    app, owner, tmp_path
):
    """A request whose user was loaded, then expired by a rollback (a reply stored while the
    database went away), then answered: the access log's user id comes from the row's identity.
    Before, it read ``user.id``, which loads the row again: with the database gone that raised
    in the 503's own response, and Flask answered a bare 500 (seen in the cluster test)."""
    from flask import g

    from app.models import User
    from app.observability import _served_user

    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        pytest.skip("takes the database away by moving its file")
    with app.test_request_context("/api/projects"):
        g._login_user = db.session.get(User, owner.id)
        db.session.rollback()  # expires the row
        db.engine.dispose()
        path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
        os.replace(path, tmp_path / "away.db")  # what a new connection finds: no tables
        try:
            assert _served_user() == str(owner.id)
        finally:
            os.replace(tmp_path / "away.db", path)
            db.engine.dispose()


def test_a_connection_the_database_closed_before_the_teardown_ends_quietly(caplog):
    """The database stops between a request's last statement and its end (the cluster test's
    upload: stored, answered 201, then PostgreSQL shut down): closing the session's open
    transaction fails, and that is one warning, not an error out of the teardown (there
    gunicorn answered the stored upload with a bare 500). A real PostgreSQL backend, ended
    with ``pg_terminate_backend``."""
    from sqlalchemy import create_engine, text

    from app import create_app
    from tests.conftest import base_config

    url = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    app = create_app(base_config(url))
    admin = create_engine(url)
    try:
        with caplog.at_level(logging.WARNING, logger="app.transactions"):
            with app.app_context():
                pid = db.session.execute(
                    text("SELECT pg_backend_pid()")
                ).scalar()  # in a transaction
                with admin.connect() as conn:
                    assert conn.execute(
                        text("SELECT pg_terminate_backend(:p)"), {"p": pid}
                    ).scalar()
        assert [r.getMessage() for r in caplog.records] == [
            "session ended without its connection: AdminShutdown"
        ]
        with app.app_context():  # the pool gave the dead connection up
            assert db.session.execute(text("SELECT 1")).scalar() == 1
    finally:
        admin.dispose()
        with app.app_context():
            db.engine.dispose()
