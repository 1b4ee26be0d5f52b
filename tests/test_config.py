from pathlib import Path

import pytest

from app.config import ConfigError, load_config, normalise_database_url


def test_production_refuses_to_start_without_a_secret(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config(tmp_path, env={"APP_ENV": "production"})


@pytest.mark.parametrize("secret", ["changeme", "dev", "short-secret"])
def test_production_refuses_weak_secrets(tmp_path, secret):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config(tmp_path, env={"APP_ENV": "production", "SECRET_KEY": secret})


def test_production_accepts_a_strong_secret_and_secures_cookies(tmp_path):
    cfg = load_config(tmp_path, env={"APP_ENV": "production", "SECRET_KEY": "s" * 48})
    assert cfg["SESSION_COOKIE_SECURE"] is True
    assert cfg["SESSION_COOKIE_HTTPONLY"] is True
    assert cfg["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert not (tmp_path / "secret_key").exists()


def test_development_generates_a_secret_once_and_reuses_it(tmp_path: Path):
    first = load_config(tmp_path, env={})["SECRET_KEY"]
    second = load_config(tmp_path, env={})["SECRET_KEY"]
    assert len(first) >= 32
    assert first == second
    assert (tmp_path / "secret_key").read_text() == first


def test_defaults_use_sqlite_in_instance_and_bcrypt_cost_12(tmp_path):
    cfg = load_config(tmp_path, env={"SECRET_KEY": "x" * 40})
    assert cfg["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'prompthub.db'}"
    assert cfg["BCRYPT_ROUNDS"] == 12
    assert cfg["JWT_EXPIRES_DAYS"] == 7
    assert cfg["SESSION_COOKIE_SECURE"] is False


def test_bad_numbers_are_reported_by_name(tmp_path):
    with pytest.raises(ConfigError, match="JWT_EXPIRES_DAYS"):
        load_config(tmp_path, env={"SECRET_KEY": "x" * 40, "JWT_EXPIRES_DAYS": "soon"})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls_use_psycopg3(given, expected):
    assert normalise_database_url(given) == expected


def test_web_workers_can_leave_out_the_migration_commands(database_url):
    from app import create_app
    from tests.conftest import base_config

    assert "migrate" in create_app(base_config(database_url)).extensions
    served = create_app(base_config(database_url, DB_MIGRATE_COMMANDS=False))
    assert "migrate" not in served.extensions
    assert served.url_map.bind("localhost").match("/healthz")


def test_gunicorn_workers_leave_out_the_migration_commands():
    namespace: dict = {}
    exec((Path(__file__).parents[1] / "gunicorn.conf.py").read_text(), namespace)
    assert "DB_MIGRATE_COMMANDS=false" in namespace["raw_env"]
