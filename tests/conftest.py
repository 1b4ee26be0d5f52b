"""Shared fixtures: a fresh app and database per test, a CSRF-aware client, auth actions.

Databases: SQLite in ``tmp_path`` by default (a file, so a live-server thread shares it);
PostgreSQL when ``TEST_DATABASE_URL`` is set: the database is created fresh for the session and
tables are truncated between tests. CSRF stays on; ``CSRFClient`` reads the token from a page
like a browser does.
"""

from __future__ import annotations

import os
import re
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from app import create_app
from app.extensions import db
from tests.factories import DEFAULT_PASSWORD, make_user

PG_URL = os.environ.get("TEST_DATABASE_URL", "").strip()
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')

# Keep proxy settings from diverting loopback traffic (fake providers, live servers).
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost,::1"


def pytest_collection_modifyitems(config, items):
    """Benchmarks run only when asked for (-m bench); PostgreSQL-only tests only with PG.

    They are deselected, not skipped, so a pass never counts them as coverage."""
    markexpr = config.getoption("-m") or ""
    keep, drop = [], []
    for item in items:
        if item.get_closest_marker("bench") and "bench" not in markexpr:
            drop.append(item)
        elif item.get_closest_marker("postgres") and not PG_URL:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _admin_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://"))
    name = parts.path.lstrip("/")
    return urlunsplit(parts._replace(path="/postgres")), name


def recreate_pg_database(url: str) -> None:
    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_pg_database(url: str) -> None:
    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url():
    if not PG_URL:
        yield None
        return
    recreate_pg_database(PG_URL)
    app = create_app(base_config(PG_URL))
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    yield PG_URL
    drop_pg_database(PG_URL)


def base_config(database_url: str, **extra) -> dict:
    return {
        "APP_ENV": "testing",
        "SECRET_KEY": "test-secret-key-that-is-long-enough-000000",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "BCRYPT_ROUNDS": 4,  # the real cost (12) is checked in test_security
        # Never let a developer's .env reach a real provider from the tests.
        "OPENAI_API_KEY": None,
        "OPENROUTER_API_KEY": None,
        # Nor its token key or cross-origin settings (tests that need them set them).
        "JWT_SECRET": None,
        "CORS_ORIGINS": "",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "OPENROUTER_BASE_URL": "http://127.0.0.1:9/api/v1",
        "OFFLINE_TOKEN_DELAY_MS": 0,
        "RATELIMIT_ENABLED": False,  # tests/test_rate_limits.py turns it on
        # No extra title call after a first reply (it would count in the fake's recordings);
        # tests/test_titles.py and the title browser test turn it on.
        "CHAT_TITLES": False,
        # No background chores between tests' truncations; the tests run them (run_now).
        "MAINTENANCE_SECONDS": 0,
        **extra,
    }


@pytest.fixture
def database_url(tmp_path, pg_url):
    return pg_url or f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def config_overrides(request):
    """Extra config for the ``app``: override it in a module or class
    (``@pytest.fixture def config_overrides``). A module, class or test marked
    ``use_fake(**settings)`` gets ``fake.app_config(**settings)``: chat goes to the fake provider
    server, ``openai=False``/``openrouter=False`` leave a provider out, other keys are settings."""
    marker = request.node.get_closest_marker("use_fake")
    if marker is None:
        return {}
    return request.getfixturevalue("fake").app_config(*marker.args, **marker.kwargs)


@pytest.fixture(autouse=True)
def _reset_the_fake_for_use_fake(request):
    """Tests marked ``use_fake`` start with a fake that has no scripts and no recordings (also
    when their module or class overrides ``config_overrides``)."""
    if request.node.get_closest_marker("use_fake") is not None:
        request.getfixturevalue("fake").reset()


@pytest.fixture
def app(database_url, config_overrides, tmp_path):
    uploads = {"UPLOAD_DIR": str(tmp_path / "uploads")}
    app = create_app(base_config(database_url, **{**uploads, **config_overrides}))
    app.test_client_class = CSRFClient
    with app.app_context():
        if database_url.startswith("sqlite"):
            db.create_all()
        else:
            names = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            db.session.commit()
    yield app
    from app.llm import close_client

    # Turns still generating (a test that left its stream) end before the next test's database.
    assert app.extensions["running_turns"].stop_all(), "a turn did not end"
    close_client(app)
    app.extensions["broker"].shutdown()
    app.extensions["token_users"].shutdown()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


class CSRFClient(FlaskClient):
    """Sends the CSRF token a browser would: read from the page's meta tag, sent as the form
    field and as ``X-CSRFToken``. Requests with ``Authorization`` are left alone (bearer clients
    need no CSRF). Pass ``csrf=False`` to send a request without a token."""

    def csrf_token(self) -> str:
        page = super().open("/login", follow_redirects=True)
        match = META_TOKEN.search(page.get_data(as_text=True))
        assert match, "no csrf-token meta tag on the page"
        return match.group(1)

    def open(self, *args, **kwargs):
        send_token = kwargs.pop("csrf", True)
        method = (kwargs.get("method") or "GET").upper()
        headers = dict(kwargs.pop("headers", None) or {})
        if send_token and method in UNSAFE and "Authorization" not in headers:
            token = self.csrf_token()
            headers["X-CSRFToken"] = token
            data = kwargs.get("data")
            if isinstance(data, dict) and "csrf_token" not in data:
                kwargs["data"] = {**data, "csrf_token": token}
        kwargs["headers"] = headers
        return super().open(*args, **kwargs)


@pytest.fixture
def server_database(tmp_path, pg_url):
    """A database of its own for a real server a test starts: SQLite in ``tmp_path``, or a
    fresh PostgreSQL database beside the suite's (dropped afterwards)."""
    if not pg_url:
        yield f"sqlite:///{tmp_path / 'server.db'}"
        return
    url = pg_url + "_live"
    recreate_pg_database(url)
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="module")
def module_server_database(tmp_path_factory):
    """A database of its own for a real server that a whole module shares (one gunicorn per
    module): SQLite, or a fresh PostgreSQL database beside the suite's, dropped after the
    module (after the module's server fixture has stopped its server)."""
    if not PG_URL:
        yield f"sqlite:///{tmp_path_factory.mktemp('server') / 'server.db'}"
        return
    parts = urlsplit(PG_URL)
    url = urlunsplit(parts._replace(path=parts.path + "_server"))
    recreate_pg_database(url)
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def fake():
    """The fake OpenAI/OpenRouter server (tests/fake_provider.py), real HTTP on loopback."""
    from tests.fake_provider import FakeProviderServer

    server = FakeProviderServer().start()
    yield server
    server.stop()


S3_BUCKET = "prompthub-tests"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """One real S3 server (SeaweedFS, ``tests/seaweed.py``) for the whole session, started by
    the first test that asks for it (so a run without S3 tests never starts it), with the
    bucket ``S3_BUCKET``. Tests keep apart by prefix (``s3_settings``)."""
    from tests.seaweed import SeaweedFS

    server = SeaweedFS(tmp_path_factory.mktemp("seaweed")).start()
    try:
        server.make_bucket(S3_BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_settings(seaweed, tmp_path) -> dict:
    """App settings for the session's S3 server, under a prefix of this test's own."""
    prefix = f"t-{uuid.uuid4().hex[:12]}/files"
    return {
        **seaweed.settings(S3_BUCKET, prefix),
        "STORAGE_STAGING_DIR": str(tmp_path / "staging"),
    }


@pytest.fixture(params=["local", "s3"])
def storage_settings(request) -> dict:
    """The store under test, once per backend: nothing (the local ``UPLOAD_DIR``) or S3.
    A module runs its tests on both with ``config_overrides`` returning these."""
    if request.param == "local":
        return {}
    return request.getfixturevalue("s3_settings")


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def owner(app):
    """A registered user with a bearer token (``owner.headers``); modules may override it."""
    return make_user(app, email="ada@example.com")


@pytest.fixture
def live_server(app):
    """The test's app on a real loopback HTTP server (threads): its base URL."""
    from tests.servers import in_thread

    with in_thread(app) as base:
        yield base


@pytest.fixture
def raw_client(app):
    """A plain Flask test client that knows nothing about CSRF."""
    app.test_client_class = FlaskClient
    return app.test_client()


class AuthActions:
    def __init__(self, client):
        self.client = client

    def register(self, email="ada@example.com", password=DEFAULT_PASSWORD, name="Ada", **kw):
        data = {"email": email, "password": password, "confirm": password, "name": name}
        return self.client.post("/register", data=data, **kw)

    def login(self, email="ada@example.com", password=DEFAULT_PASSWORD, **kw):
        return self.client.post("/login", data={"email": email, "password": password}, **kw)

    def logout(self):
        return self.client.post("/logout")


@pytest.fixture
def auth(client):
    return AuthActions(client)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
