"""Shared fixtures: a fresh app and database per test, a CSRF-aware client, auth actions.

Databases: SQLite in ``tmp_path`` by default (a file, so a live-server thread shares it), copied
from a template the session builds once; PostgreSQL when ``TEST_DATABASE_URL`` is set: the
database is created fresh for the session and emptied between tests (``empty_pg_tables``).
CSRF stays on; ``CSRFClient`` reads the token from a page like a browser does. The ``server``
marker is enforced here (a test that starts a server process unmarked fails).
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from flask.testing import FlaskClient
from jinja2 import BytecodeCache
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
    check_server_markers(items)
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


# --- the server marker, kept honest ------------------------------------------------------------
# A test that starts a real server process is marked ``server`` (or is a benchmark), so the fast
# lane (``make test-fast``: not browser, cluster, server or bench) runs in process only. Enforced
# twice: at collection (a test that uses a session server fixture) and when the process starts
# (an audit hook on ``subprocess.Popen`` names the program), so no helper can forget the check.

SERVER_PROGRAMS = {"gunicorn", "initdb", "postgres", "redis-server", "weed", "haproxy"}
SERVER_FIXTURES = {"seaweed"}  # started once by the first test that asks, kept for the session
EXEMPT_MARKERS = ("server", "bench")
_running: list[pytest.Item] = []  # the test being run (setup, call and teardown)


def server_program(args) -> str | None:
    """The server a ``subprocess.Popen(args)`` starts, or None for other programs (a CLI
    command, ``make -n``, a Python probe)."""
    if isinstance(args, (str, bytes, os.PathLike)):
        args = [args]
    args = [os.fsdecode(a) for a in args]
    words = set(args)
    # The programs: the first word, and paths (``runuser -u postgres -- /usr/lib/.../initdb``).
    programs = {os.path.basename(a) for i, a in enumerate(args) if i == 0 or "/" in a}
    for program in sorted(programs & SERVER_PROGRAMS):
        return program
    pairs = {("pg_ctl", "start"), ("flask", "run"), ("honcho", "start")}
    for program, command in sorted(pairs):
        if program in programs and command in words:
            return f"{program} {command}"
    if "tools.cluster" in words:
        return "tools.cluster"
    return None


def _exempt(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) for name in EXEMPT_MARKERS)


def _refuse_unmarked_servers(event: str, args: tuple) -> None:
    if event != "subprocess.Popen" or not _running:
        return
    item = _running[-1]
    program = server_program(args[1] if args[1] is not None else args[0])
    if program and not _exempt(item):
        raise UnmarkedServer(
            f"{item.nodeid} starts a real server ({program}) but is not marked "
            "@pytest.mark.server: mark it, so the fast lane stays in process"
        )


class UnmarkedServer(AssertionError):
    pass


sys.addaudithook(_refuse_unmarked_servers)  # audit hooks cannot be removed: gated by _running


# --- the garbage collector, paced for a suite --------------------------------------------------
# Each test builds an app (thousands of objects: rules, templates, SQLAlchemy mappers), so
# CPython's default thresholds (700 allocations) ran a young collection every few hundred
# microseconds and a full one every few tests: about 15 % of the fast lane's time went to
# walking the same long-lived objects (measured in docs/testing.md). The suite raises the
# young threshold, freezes what collection built (modules, the template cache, the shared
# URL builders) out of every later walk, and runs a full collection itself every 50 tests and
# before each test that starts a server or a cluster (whose timing budgets must not meet a
# long pause). Unreachable cycles are still collected, a little later; a resource left open
# by a test is still reported (``filterwarnings = error`` turns the warning into a failure).
GC_EVERY = 50
gc.set_threshold(50_000, 20, 100)
_tests_run = 0


def pytest_collection_finish(session):
    gc.collect()
    gc.freeze()


def pytest_runtest_setup(item):
    global _tests_run
    _tests_run += 1
    if (
        _tests_run % GC_EVERY == 0
        or item.get_closest_marker("server")
        or item.get_closest_marker("cluster")
    ):
        gc.collect()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.remove(item)


def check_server_markers(items) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())) and not _exempt(item)
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests use a real server (" + ", ".join(sorted(SERVER_FIXTURES)) + ") but are"
            " not marked @pytest.mark.server:\n  " + "\n  ".join(unmarked)
        )


# --- a fresh app per test, for less ---------------------------------------------------------------
# Werkzeug compiles two URL-builder functions for every rule of every app (an ``ast`` built and
# ``compile``d, ~0.1 ms each): 95 % of ``create_app``, ~20 ms of every test's ``app``. The code it
# makes depends only on the rule's text and parts (``_trace``) and whether unknown arguments are
# appended; the function is bound to each rule (``.self``) and reads the rule's own converters.
# So the suite compiles each one once: a fresh app still gets rules, converters and a map of its
# own. Rules with defaults are compiled as usual (a default is folded into the code through the
# rule's converter). Without this private method (another Werkzeug) nothing is cached.


def _share_url_builders() -> None:
    from werkzeug.routing.rules import Rule

    compile_builder = getattr(Rule, "_compile_builder", None)
    if compile_builder is None or getattr(compile_builder, "shared", False):
        return
    compiled: dict[tuple, object] = {}

    def shared_builder(self, append_unknown: bool = True):
        if self.defaults:
            return compile_builder(self, append_unknown)
        key = (self.rule, tuple(self._trace), append_unknown)
        if key not in compiled:
            compiled[key] = compile_builder(self, append_unknown)
        return compiled[key]

    shared_builder.shared = True
    shared_builder.original = compile_builder
    Rule._compile_builder = shared_builder


_share_url_builders()


class SharedTemplateCode(BytecodeCache):
    """Jinja compiles each template of each new app from its source (about 15 ms a page):
    the apps of the session share the compiled code in memory instead. Jinja checks the
    source's checksum before it uses a stored entry, so an edited template is compiled again."""

    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        if (code := self.code.get(bucket.key)) is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


TEMPLATE_CODE = SharedTemplateCode()


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
        stamp_head(app)
        db.engine.dispose()
    yield PG_URL
    drop_pg_database(PG_URL)


def stamp_head(app) -> None:
    """Tables made by ``create_all`` are the code's schema: mark the database as migrated to
    the head revision (what ``flask db stamp head`` does), or ``/readyz`` calls it unmigrated."""
    db.session.execute(
        text("CREATE TABLE IF NOT EXISTS alembic_version"
             " (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    )  # fmt: skip
    db.session.execute(text("DELETE FROM alembic_version"))
    for head in app.extensions["schema_check"].heads:
        db.session.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": head})
    db.session.commit()


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
        # PDF children at the suite's own priority: niced under a busy suite, a one-page PDF
        # waited seconds for the CPU (test_extraction checks the niceness itself).
        "EXTRACT_NICE": 0,
        **extra,
    }


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """The schema built once per session (``create_all``, stamped at head) in a SQLite file
    that each test's ``app`` gets a fresh copy of: the same database a per-test ``create_all``
    made, without building it ~1,400 times."""
    path = tmp_path_factory.mktemp("schema") / "template.db"
    app = create_app(base_config(f"sqlite:///{path}"))
    with app.app_context():
        db.create_all()
        stamp_head(app)
        db.session.remove()
        db.engine.dispose()
    return path


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


def empty_pg_tables() -> None:
    """Every table empty and every id sequence at its start, as ``TRUNCATE … RESTART IDENTITY``
    leaves them, touching only what the last test wrote: a ``DELETE`` of a few rows costs a
    millisecond, a ``TRUNCATE`` of every table (new files for each) about 80 ms per test.
    Parents first: their cascades empty the children (and the projects ↔ prompt_versions
    cycle) in one statement. Anything unexpected: the ``TRUNCATE`` of everything."""
    tables = db.metadata.sorted_tables
    probe = " UNION ALL ".join(
        f'SELECT {i} WHERE EXISTS (SELECT 1 FROM "{t.name}")' for i, t in enumerate(tables)
    )
    try:
        dirty = sorted(db.session.execute(text(probe)).scalars())
        used = db.session.execute(
            text("SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences"
                 " WHERE schemaname = current_schema() AND last_value IS NOT NULL")
        ).scalars().all()  # fmt: skip
        for i in dirty:
            db.session.execute(text(f'DELETE FROM "{tables[i].name}"'))  # noqa: S608
        for sequence in used:
            db.session.execute(text("SELECT setval(:s, 1, false)"), {"s": sequence})
        db.session.commit()
    except Exception:
        db.session.rollback()
        names = ", ".join(f'"{t.name}"' for t in tables)
        db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        db.session.commit()


def _copy_template(request, url: str) -> bool:
    """Copy the session's schema to ``url``'s file when it is a SQLite file that does not
    exist yet (nothing has opened it); False when the test has to build its own."""
    if not url.startswith("sqlite:///"):
        return False
    target = Path(url.removeprefix("sqlite:///"))
    if target.exists():
        return False
    shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
    return True


@pytest.fixture
def app(database_url, config_overrides, tmp_path, request):
    # Files of its own, not instance/'s: uploads, the reply spool and the revocation log.
    own = {
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "REPLY_SPOOL_DIR": str(tmp_path / "spool"),
        "AUTH_REVOCATION_LOG": str(tmp_path / "auth-revocations.log"),
    }
    settings = base_config(database_url, **{**own, **config_overrides})
    sqlite = database_url.startswith("sqlite")
    copied = sqlite and _copy_template(request, settings["SQLALCHEMY_DATABASE_URI"])
    app = create_app(settings)
    app.test_client_class = CSRFClient
    app.jinja_env.bytecode_cache = TEMPLATE_CODE
    with app.app_context():
        if sqlite:
            if not copied:  # a database made before the app, or another one: build it here
                db.create_all()
                stamp_head(app)
        else:
            empty_pg_tables()
    yield app
    from app.llm import close_client

    # Turns still generating (a test that left its stream) end before the next test's database,
    # and so do the jobs this process runs (a title call after a test's last reply).
    assert app.extensions["running_turns"].stop_all(), "a turn did not end"
    # Jobs the test queued (an upload's extraction) end before its connections are closed: a
    # runner still holding one would return it to the disposed pool, left for the collector.
    assert app.extensions["jobs"].shutdown(), "a job did not end"
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
    """The fake OpenAI/OpenRouter server (tools/fake_provider.py), real HTTP on loopback."""
    from tools.fake_provider import FakeProviderServer

    server = FakeProviderServer().start()
    yield server
    server.stop()


S3_BUCKET = "prompthub-tests"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """One real S3 server (SeaweedFS, ``tools/seaweed.py``) for the whole session, started by
    the first test that asks for it (so a run without S3 tests never starts it), with the
    bucket ``S3_BUCKET``. Tests keep apart by prefix (``s3_settings``)."""
    from tools.seaweed import SeaweedFS

    server = SeaweedFS(tmp_path_factory.mktemp("seaweed")).start()
    try:
        server.make_bucket(S3_BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_settings(seaweed, tmp_path, request) -> dict:
    """App settings for the session's S3 server, under a prefix of this test's own. Checked per
    test (it may be asked for by name, e.g. ``storage_settings``' ``s3``): only ``server`` tests."""
    if not _exempt(request.node):
        raise UnmarkedServer(f"{request.node.nodeid} uses SeaweedFS but is not marked server")
    prefix = f"t-{uuid.uuid4().hex[:12]}/files"
    return {
        **seaweed.settings(S3_BUCKET, prefix),
        "STORAGE_STAGING_DIR": str(tmp_path / "staging"),
    }


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.server)])
def storage_settings(request) -> dict:
    """The store under test, once per backend: nothing (the local ``UPLOAD_DIR``) or S3
    (SeaweedFS: that parameter is marked ``server``).
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
    from tools.servers import in_thread

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
