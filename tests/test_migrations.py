"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL.

On PostgreSQL the check runs in a schema of its own inside the test database
(``TEST_DATABASE_URL``), so it never creates or drops another database on a shared server."""

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app import create_app
from app.extensions import db
from tests.conftest import base_config

SCHEMA = "migration_check"


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
