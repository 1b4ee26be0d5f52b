"""The test lanes hold: the fast lane (``make test-fast``) starts no server process, because a
test that starts one without the ``server`` marker fails (tests/conftest.py); and each test's
SQLite database, copied from the session's template, is the code's schema, empty, its own."""

from __future__ import annotations

import sqlite3
import subprocess

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import User
from tests.conftest import UnmarkedServer, check_server_markers, server_program
from tests.factories import make_user


@pytest.mark.parametrize(
    ("args", "program"),
    [
        (["/venv/bin/gunicorn", "--config", "gunicorn.conf.py", "app:create_app()"], "gunicorn"),
        (["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/17/bin/initdb"], "initdb"),
        (["/usr/lib/postgresql/17/bin/pg_ctl", "-D", "data", "-w", "start"], "pg_ctl start"),
        (["/usr/lib/postgresql/17/bin/pg_ctl", "-D", "data", "-m", "fast", "stop"], None),
        (["redis-server", "--port", "6390"], "redis-server"),
        (["/venv/bin/weed", "server", "-dir", "x"], "weed"),
        (["/venv/bin/flask", "run", "--port", "5000"], "flask run"),
        (["/venv/bin/honcho", "-f", "Procfile", "start", "web"], "honcho start"),
        (["/venv/bin/python", "-m", "tools.cluster", "--port", "8080"], "tools.cluster"),
        (["/venv/bin/flask", "db", "upgrade"], None),
        (["make", "-n", "run"], None),
        (["/venv/bin/python", "-c", "print(1)"], None),
        ("haproxy", "haproxy"),
    ],
)
def test_server_programs_are_told_from_other_commands(args, program):
    assert server_program(args) == program


def test_an_unmarked_test_that_starts_a_server_fails(tmp_path):
    """Refused before anything runs (the program does not even exist here)."""
    with pytest.raises(UnmarkedServer, match="not marked @pytest.mark.server"):
        subprocess.Popen([str(tmp_path / "gunicorn"), "app:create_app()"])


@pytest.mark.server
def test_a_marked_test_may_start_one(tmp_path):
    with pytest.raises(FileNotFoundError):
        subprocess.Popen([str(tmp_path / "gunicorn"), "app:create_app()"])


def test_an_unmarked_test_of_the_session_s3_server_is_refused_at_collection(request):
    class Unmarked:
        nodeid = "tests/test_x.py::test_s3"
        fixturenames = ("app", "seaweed")

        def get_closest_marker(self, name):
            return None

    with pytest.raises(pytest.UsageError, match="test_x.py::test_s3"):
        check_server_markers([Unmarked()])
    check_server_markers([request.node])  # no server fixture here


def schema(path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()


def test_each_database_is_a_copy_of_the_session_schema(app, database_url, sqlite_template):
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL: one database, emptied between tests")
    mine = database_url.removeprefix("sqlite:///")
    assert mine != str(sqlite_template)
    assert schema(mine) == schema(sqlite_template)
    names = {row[1] for row in schema(mine) if row[0] == "table"}
    assert names == set(db.metadata.tables) | {"alembic_version"}
    with sqlite3.connect(mine) as conn:
        stamped = {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
    assert stamped == set(app.extensions["schema_check"].heads)


@pytest.mark.parametrize("turn", [1, 2])
def test_what_a_test_writes_is_gone_for_the_next(app, turn):
    """Both runs find an empty database whose ids start at 1 (on PostgreSQL: the rows deleted and
    the sequences reset between tests)."""
    user = make_user(app, email=f"lane{turn}@example.com")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1
    assert user.id == 1


def test_shared_url_builders_build_what_werkzeug_compiles_for_each_rule(app):
    """The suite compiles each URL builder once (tests/conftest.py ``_share_url_builders``):
    every rule of a fresh app builds the same URLs as a builder compiled for that rule."""
    from werkzeug.routing.rules import Rule

    original = Rule._compile_builder.original
    rules = list(app.url_map.iter_rules())
    assert len(rules) > 50
    for rule in rules:
        values = dict.fromkeys(rule.arguments, 7)
        for append_unknown in (False, True):
            own = original(rule, append_unknown).__get__(rule, None)
            assert rule.build({**values, "q": "x y"}, append_unknown) == own(**values, q="x y")
