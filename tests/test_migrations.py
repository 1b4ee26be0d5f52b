"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app import create_app
from app.extensions import db
from tests.conftest import base_config, drop_pg_database, recreate_pg_database


def _scratch_urls(tmp_path):
    yield f"sqlite:///{tmp_path / 'migrations.db'}"
    pg = os.environ.get("TEST_DATABASE_URL")
    if pg:
        yield pg.rsplit("/", 1)[0] + "/prompthub_migration_check"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_upgrade_from_empty_matches_the_models(tmp_path, backend):
    url = next(u for u in _scratch_urls(tmp_path) if u.startswith(backend))
    if backend == "postgresql":
        recreate_pg_database(url)
    app = create_app(base_config(url))
    try:
        with app.app_context():
            upgrade()
            with db.engine.connect() as conn:
                diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
            assert diff == [], f"models and migrations differ: {diff}"
            downgrade(revision="base")
            upgrade()
            db.engine.dispose()
    finally:
        if backend == "postgresql":
            drop_pg_database(url)
