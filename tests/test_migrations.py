"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL.

On PostgreSQL the check runs in a schema of its own inside the test database
(``TEST_DATABASE_URL``), so it never creates or drops another database on a shared server."""

import subprocess

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect as sa_inspect

from app import create_app
from app.extensions import db
from tests.conftest import base_config
from tools.servers import BIN, ROOT, server_env

SCHEMA = "migration_check"


def seed_user_and_project(conn) -> None:
    """User 1 and their project 1, as raw rows (the models may be ahead of the schema)."""
    conn.exec_driver_sql(
        "INSERT INTO users (id, email, password_hash, token_version, created_at) "
        "VALUES (1, 'a@example.com', 'x', 0, CURRENT_TIMESTAMP)"
    )
    conn.exec_driver_sql(
        "INSERT INTO projects (id, owner_id, name, description, created_at, updated_at,"
        " canary_percent) VALUES (1, 1, 'Bot', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0)"
    )


@pytest.fixture
def scratch_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    pg_url = request.getfixturevalue("pg_url")  # the test database, created for the session
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
    joiner = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{joiner}options=-csearch_path%3D{SCHEMA}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


@pytest.mark.parametrize(
    "scratch_url",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_upgrade_from_empty_matches_the_models(scratch_url):
    app = create_app(base_config(scratch_url))
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            assert (
                conn.dialect.name == "sqlite"
                or conn.exec_driver_sql("SELECT current_schema()").scalar() == SCHEMA
            )
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        downgrade(revision="base")
        upgrade()
        db.engine.dispose()


@pytest.mark.parametrize(
    "scratch_url",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_existing_versions_get_the_default_settings(scratch_url):
    """Migration 0007 on a database with data: versions get gpt-4o-mini, the provider's
    temperature and 1024 output tokens; projects no candidate and no canary."""
    app = create_app(base_config(scratch_url))
    with app.app_context():
        upgrade(revision="0006")
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO users (id, email, password_hash, token_version, created_at) "
                "VALUES (1, 'a@example.com', 'x', 0, CURRENT_TIMESTAMP)"
            )
            conn.exec_driver_sql(
                "INSERT INTO projects (id, owner_id, name, description, created_at, updated_at) "
                "VALUES (1, 1, 'Bot', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
            conn.exec_driver_sql(
                "INSERT INTO prompt_versions (id, project_id, version, content, created_at) "
                "VALUES (1, 1, 1, 'Be kind.', CURRENT_TIMESTAMP)"
            )
        upgrade()
        with db.engine.connect() as conn:
            version = conn.exec_driver_sql(
                "SELECT model, temperature, max_output_tokens FROM prompt_versions"
            ).one()
            project = conn.exec_driver_sql(
                "SELECT candidate_prompt_id, canary_percent FROM projects"
            ).one()
        assert tuple(version) == ("gpt-4o-mini", None, 1024)
        assert tuple(project) == (None, 0)
        downgrade(revision="base")
        db.engine.dispose()


@pytest.mark.parametrize(
    "scratch_url",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_existing_files_keep_their_copy_and_get_no_openai_answer(scratch_url):
    """Migration 0008 on a database with files: a copied file keeps its OpenAI id, the new
    columns (OpenAI's answer, not kept before) are null, and the API says so; downgrading
    drops them and keeps the rest."""
    app = create_app(base_config(scratch_url))
    with app.app_context():
        upgrade(revision="0007")
        with db.engine.begin() as conn:
            seed_user_and_project(conn)
            columns = (
                "INSERT INTO files (id, project_id, name, stored_name, size, content_type, "
                "sha256, text_status, text_chars, use_in_chat, openai_file_id, sync_status, "
                "created_at) VALUES "
            )
            conn.exec_driver_sql(
                columns + "(1, 1, 'a.txt', 's1', 5, 'text/plain', 'h1', 'ok', 5, false, "
                "'file-old', 'synced', CURRENT_TIMESTAMP)"
            )
            conn.exec_driver_sql(
                columns + "(2, 1, 'b.txt', 's2', 5, 'text/plain', 'h2', 'ok', 5, false, "
                "NULL, 'failed', CURRENT_TIMESTAMP)"
            )
        upgrade()
        with db.engine.connect() as conn:
            stored = conn.exec_driver_sql(
                "SELECT id, openai_file_id, sync_status, openai_bytes, openai_created_at,"
                " openai_expires_at, openai_purpose, openai_status FROM files ORDER BY id"
            ).all()
        assert [tuple(r) for r in stored] == [
            (1, "file-old", "synced", None, None, None, None, None),
            (2, None, "failed", None, None, None, None, None),
        ]
        with app.test_request_context():
            from app.files.schemas import File
            from app.models import StoredFile

            old, failed = (File.of(db.session.get(StoredFile, i))["openai"] for i in (1, 2))
        assert old["file"] == {
            "id": "file-old",
            "bytes": None,
            "created_at": None,
            "expires_at": None,
            "purpose": None,
            "status": None,
        }
        assert failed["file"] is None
        db.session.remove()

        downgrade(revision="0007")
        with db.engine.connect() as conn:
            columns = {c["name"] for c in sa_inspect(conn).get_columns("files")}
            kept = conn.exec_driver_sql("SELECT openai_file_id FROM files ORDER BY id").all()
        assert not {c for c in columns if c.startswith("openai_") and c != "openai_file_id"}
        assert [r[0] for r in kept] == ["file-old", None]
        downgrade(revision="base")
        db.engine.dispose()


@pytest.mark.parametrize(
    "scratch_url",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_existing_conversations_become_branches(scratch_url):
    """Migration 0010 on a conversation written before branches (Q1, A1, A1 regenerated, Q2,
    A2): each reply belongs to the question before it, so the regenerated reply is a sibling of
    the first; Q2 follows the newest reply; the conversation shows its newest message."""
    app = create_app(base_config(scratch_url))
    with app.app_context():
        upgrade(revision="0009")
        with db.engine.begin() as conn:
            seed_user_and_project(conn)
            conn.exec_driver_sql(
                "INSERT INTO conversations (id, project_id, title, updated_at, created_at) "
                "VALUES (1, 1, 'Q1', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
            for i, (role, content) in enumerate(
                [("user", "Q1"), ("assistant", "A1"), ("assistant", "A1b"), ("user", "Q2"),
                 ("assistant", "A2")], start=1,
            ):  # fmt: skip
                conn.exec_driver_sql(
                    "INSERT INTO messages (id, conversation_id, role, content, status, fallback,"
                    f" created_at) VALUES ({i}, 1, '{role}', '{content}', 'complete', false,"
                    " CURRENT_TIMESTAMP)"
                )
        upgrade()
        with db.engine.connect() as conn:
            parents = conn.exec_driver_sql("SELECT id, parent_id FROM messages ORDER BY id").all()
            leaf = conn.exec_driver_sql("SELECT leaf_id FROM conversations").scalar()
        assert [tuple(r) for r in parents] == [(1, None), (2, 1), (3, 1), (4, 3), (5, 4)]
        assert leaf == 5
        downgrade(revision="0009")
        with db.engine.connect() as conn:
            columns = {c["name"] for c in sa_inspect(conn).get_columns("messages")}
            count = conn.exec_driver_sql("SELECT count(*) FROM messages").scalar()
        assert "parent_id" not in columns and count == 5
        downgrade(revision="base")
        db.engine.dispose()


@pytest.mark.parametrize(
    "scratch_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_two_upgrades_at_once_both_succeed_one_after_the_other(scratch_url, tmp_path):
    """Two release steps racing on an empty PostgreSQL database: the migration lock (an advisory
    lock in migrations/env.py) makes the second wait, then find nothing to do; without it one
    of them fails creating a table the other one is creating."""
    env = server_env(scratch_url, 0, DB_MIGRATE_COMMANDS="true")
    procs = [
        subprocess.Popen(
            [str(BIN / "flask"), "db", "upgrade"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], "\n----\n".join(outputs)
    app = create_app(base_config(scratch_url))
    with app.app_context():
        with db.engine.connect() as conn:
            stored = set(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        db.engine.dispose()
    assert stored == app.extensions["schema_check"].heads
    assert diff == []
