import base64
import secrets
from pathlib import Path

import pytest

from app.config import ConfigError, load_config, normalise_database_url
from app.filetypes import DEFAULT_ALLOWED
from app.settings import Settings

STRONG = "PXpnWGgWFuqS9lB_7UClcBytv6YtDm8Fw59wtUJsClSPAEAqfinGVBhnCdEPuy4C"  # token_urlsafe(48)


def test_production_refuses_to_start_without_a_secret(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config(tmp_path, env={"APP_ENV": "production"})


@pytest.mark.parametrize("secret", ["changeme", "dev", "short-secret"])
def test_production_refuses_weak_secrets(tmp_path, secret):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config(tmp_path, env={"APP_ENV": "production", "SECRET_KEY": secret})


def test_production_accepts_a_strong_secret_and_secures_cookies(tmp_path):
    cfg = load_config(tmp_path, env={"APP_ENV": "production", "SECRET_KEY": STRONG})
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


# --- UPLOAD_ALLOWED_EXTENSIONS and OPENAI_FILE_PURPOSE -------------------------------------------


def upload_types(raw: str | None) -> tuple[str, ...]:
    env = {"SECRET_KEY": "x" * 40}
    if raw is not None:
        env["UPLOAD_ALLOWED_EXTENSIONS"] = raw
    return load_config(Path("/nonexistent"), env=env)["UPLOAD_ALLOWED_EXTENSIONS"]


def test_the_file_copy_purpose_defaults_to_assistants(tmp_path):
    cfg = load_config(tmp_path, env={"SECRET_KEY": "x" * 40})
    assert cfg["OPENAI_FILE_PURPOSE"] == "assistants"
    env = {"SECRET_KEY": "x" * 40, "OPENAI_FILE_PURPOSE": "user_data"}
    assert load_config(tmp_path, env=env)["OPENAI_FILE_PURPOSE"] == "user_data"


@pytest.mark.parametrize("raw", [None, "", "  ", "builtin", "BuiltIn"])
def test_empty_or_builtin_allows_every_builtin_type(raw):
    assert upload_types(raw) == DEFAULT_ALLOWED


@pytest.mark.parametrize(
    ("raw", "allowed"),
    [
        ("txt,md", (".md", ".txt")),  # as before: a list of built-in types restricts
        (" .TXT , md ,", (".md", ".txt")),
        (".docx", (".docx",)),  # an added type alone
        ("md,.docx,.ZIP,.x_y-1", (".docx", ".md", ".x_y-1", ".zip")),
    ],
)
def test_a_list_is_exactly_the_allowed_set(raw, allowed):
    assert upload_types(raw) == allowed


def test_builtin_plus_added_types_adds_to_the_builtin_ones():
    expected = tuple(sorted((*DEFAULT_ALLOWED, ".docx", ".xlsx")))
    assert upload_types("builtin,.docx,.xlsx") == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("exe", "'exe' is not a built-in type; to keep such files as they are, write the "
         "extension with its dot (.exe)"),
        ("md,pdff", "'pdff' is not a built-in type"),
        ("../uploads", "'../uploads' looks like a path, not an extension"),
        ("/etc/passwd", "'/etc/passwd' looks like a path"),
        (".tar.gz", "'.tar.gz': only the last part of a name is its type (write .gz)"),
        (".docx .xlsx", "'.docx .xlsx': separate the types with commas"),
        (".", "'.' is not an extension (a dot, then up to 15 letters, digits, _ or -)"),
        ("*", "'*' is not an extension"),
        (".d$cx", "'.d$cx' is not an extension"),
        (".abcdefghijklmnop", "'.abcdefghijklmnop' is not an extension"),
        (",,", "it lists no type (leave it empty for the built-in types)"),
    ],
)  # fmt: skip
def test_bad_upload_types_are_refused_at_start(raw, why):
    with pytest.raises(ConfigError) as info:
        upload_types(raw)
    message = str(info.value)
    assert message.startswith(f"UPLOAD_ALLOWED_EXTENSIONS: {why}")
    assert message.endswith("add other types with their dot, e.g. builtin,.docx,.zip")


@pytest.mark.parametrize(
    "entry",
    [
        "app.example.com",  # no scheme
        "https://app.example.com/",  # trailing slash
        "https://app.example.com/app",  # a path
        "https://app.example.com?x=1",
        "ftp://app.example.com",
        "https://*.example.com",  # no patterns: exact origins only
        "https://app.example.com.*",
        "https://user@app.example.com",
        "https://app.example.com:99999",
        "https://app..example.com",
        "https://-app.example.com",
        "http://[::g]:3000",
        "null",
        "https://",
    ],
)
def test_a_bad_cors_origin_is_refused_at_start_naming_it(tmp_path, entry):
    env = {"SECRET_KEY": STRONG, "CORS_ORIGINS": f"https://ok.example, {entry}"}
    with pytest.raises(ConfigError, match="CORS_ORIGINS entry") as err:
        load_config(tmp_path, env=env)
    assert repr(entry) in str(err.value)
    assert "scheme://host[:port]" in str(err.value)


def test_cors_origins_are_read_as_browsers_send_them(tmp_path):
    raw = " HTTPS://App.Example.COM:443 , http://localhost:3000,,http://[::1]:8080, https://app.example.com"
    cfg = load_config(tmp_path, env={"SECRET_KEY": STRONG, "CORS_ORIGINS": raw})
    assert cfg["CORS_ORIGINS"] == (
        "https://app.example.com",
        "http://localhost:3000",
        "http://[::1]:8080",
    )


def test_cors_is_off_by_default(tmp_path):
    assert load_config(tmp_path, env={"SECRET_KEY": STRONG})["CORS_ORIGINS"] == ()


def test_any_origin_is_a_star_alone(tmp_path):
    cfg = load_config(tmp_path, env={"SECRET_KEY": STRONG, "CORS_ORIGINS": " * "})
    assert cfg["CORS_ORIGINS"] == ("*",)
    with pytest.raises(ConfigError, match=r"'\*' \(any origin\) must be the only entry"):
        load_config(tmp_path, env={"SECRET_KEY": STRONG, "CORS_ORIGINS": "*, https://a.example"})


def test_cors_origins_given_as_an_override_are_checked_too(tmp_path):
    cfg = load_config(tmp_path, {"CORS_ORIGINS": ["https://A.example:443"]}, env={})
    assert cfg["CORS_ORIGINS"] == ("https://a.example",)
    with pytest.raises(ConfigError, match="CORS_ORIGINS entry 'a.example'"):
        load_config(tmp_path, {"CORS_ORIGINS": ("a.example",)}, env={})


@pytest.mark.parametrize("jwt_secret", ["changeme", "Secret", "short-but-not-32-characters"])
def test_production_refuses_a_weak_jwt_secret(tmp_path, jwt_secret):
    env = {"APP_ENV": "production", "SECRET_KEY": STRONG, "JWT_SECRET": jwt_secret}
    with pytest.raises(ConfigError, match="JWT_SECRET must be a random value"):
        load_config(tmp_path, env=env)


def test_production_refuses_a_jwt_secret_equal_to_the_secret_key(tmp_path):
    env = {"APP_ENV": "production", "SECRET_KEY": STRONG, "JWT_SECRET": STRONG}
    with pytest.raises(ConfigError, match="JWT_SECRET must differ from SECRET_KEY"):
        load_config(tmp_path, env=env)


def test_production_takes_a_strong_jwt_secret_or_none(tmp_path):
    env = {"APP_ENV": "production", "SECRET_KEY": STRONG}
    assert load_config(tmp_path, env=env)["JWT_SECRET"] is None
    other = secrets.token_urlsafe(48)
    cfg = load_config(tmp_path, env={**env, "JWT_SECRET": other})
    assert cfg["JWT_SECRET"] == other


def test_development_takes_any_jwt_secret(tmp_path):
    assert load_config(tmp_path, env={"JWT_SECRET": "dev"})["JWT_SECRET"] == "dev"


# Long enough, but guessable (issue 26, finding 7): refused in production whatever the length.
PREDICTABLE = [
    pytest.param("a" * 32, id="one-character"),
    pytest.param("x" * 64, id="one-character-64"),
    pytest.param("abc" * 11, id="repeated-abc"),
    pytest.param("0123456789abcdef" * 2, id="repeated-hex-digits"),
    pytest.param("password1234567890123456789012345", id="password-and-a-run"),
    pytest.param("Password1234!" * 3, id="password-repeated"),
    pytest.param("qwertyuiopasdfghjklzxcvbnm123456", id="keyboard-rows"),
    pytest.param("abcdefghijklmnopqrstuvwxyz012345", id="alphabet"),
    pytest.param("ab" * 16 + "ba" * 16, id="two-characters"),
]


@pytest.mark.parametrize("secret", PREDICTABLE)
def test_production_refuses_a_long_but_predictable_secret_key(tmp_path, secret):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"APP_ENV": "production", "SECRET_KEY": secret})
    message = str(info.value)
    assert message.startswith("SECRET_KEY must be a random value in production")
    assert "predictable" in message
    assert "secrets.token_urlsafe(48)" in message  # how to make a good one


@pytest.mark.parametrize("jwt_secret", PREDICTABLE)
def test_production_refuses_a_long_but_predictable_jwt_secret(tmp_path, jwt_secret):
    env = {"APP_ENV": "production", "SECRET_KEY": STRONG, "JWT_SECRET": jwt_secret}
    with pytest.raises(ConfigError, match="JWT_SECRET must be a random value") as info:
        load_config(tmp_path, env=env)
    assert "predictable" in str(info.value)
    assert "secrets.token_urlsafe(48)" in str(info.value)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: secrets.token_urlsafe(48), id="token_urlsafe-48"),
        pytest.param(lambda: secrets.token_urlsafe(32), id="token_urlsafe-32"),
        pytest.param(lambda: secrets.token_hex(32), id="token_hex-32"),
        pytest.param(lambda: secrets.token_hex(16), id="token_hex-16"),
        pytest.param(lambda: base64.b64encode(secrets.token_bytes(32)).decode(), id="render"),
    ],
)
def test_production_accepts_every_real_random_secret(tmp_path, make):
    """Fresh random values each run, many of them: the check must never refuse a real one."""
    for _ in range(100):
        secret, jwt_secret = make(), make()
        env = {"APP_ENV": "production", "SECRET_KEY": secret, "JWT_SECRET": jwt_secret}
        assert load_config(tmp_path, env=env)["SECRET_KEY"] == secret


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("EXTRACT_WORKERS", "0", "EXTRACT_WORKERS must be 1 or more"),
        ("EXTRACT_PER_USER", "0", "EXTRACT_PER_USER must be 1 or more"),
        ("EXTRACT_NICE", "20", "EXTRACT_NICE must be between 0 and 19"),
        ("EXTRACT_NICE", "-1", "EXTRACT_NICE must be between 0 and 19"),
    ],
)
def test_extraction_shares_out_of_range_stop_the_app(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, env={"SECRET_KEY": "x" * 40, key: value})


def test_extraction_defaults_leave_a_worker_for_a_second_user(tmp_path):
    cfg = load_config(tmp_path, env={"SECRET_KEY": "x" * 40})
    assert (cfg["EXTRACT_WORKERS"], cfg["EXTRACT_PER_USER"], cfg["EXTRACT_NICE"]) == (2, 1, 10)


def test_the_job_queue_defaults_and_refuses_an_unknown_scheme(tmp_path):
    """Outside production the web process runs jobs (``make run`` alone); in production a
    ``flask worker`` does. The queue: QUEUE_URL, else REDIS_URL, else SQLite in instance/."""
    from app.jobs import queue_url

    dev = load_config(tmp_path, env={})
    assert dev["QUEUE_IN_PROCESS"] is True
    assert queue_url({**dev, "INSTANCE_PATH": str(tmp_path)}) == f"sqlite:///{tmp_path}/queue.db"
    redis = {**dev, "REDIS_URL": "redis://r:6379/0", "INSTANCE_PATH": str(tmp_path)}
    assert queue_url(redis) == "redis://r:6379/0"
    secret = {"APP_ENV": "production", "SECRET_KEY": "x7Gq2-Lm9vRt4Wz8Kp3Ns6Yb1Hc5Jd0Fe"}
    assert load_config(tmp_path, env=secret)["QUEUE_IN_PROCESS"] is False
    with pytest.raises(ConfigError, match="QUEUE_URL must be"):
        load_config(tmp_path, env={"QUEUE_URL": "amqp://rabbit"})


# --- the settings object (app/settings.py) ------------------------------------------------------

FLAGS = [name for name, field in Settings.model_fields.items() if "bool" in str(field.annotation)]


@pytest.mark.parametrize("name", FLAGS)
def test_a_flag_is_true_or_false_and_anything_else_stops_the_app(tmp_path, name):
    """Before, any word but 1/true/yes/on read as false: ``TRUST_PROXY=ture`` ran without it."""
    for raw, value in (("1", True), ("Yes", True), (" ON ", True), ("off", False), ("0", False)):
        assert load_config(tmp_path, env={"SECRET_KEY": "x" * 40, name: raw})[name] is value
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"SECRET_KEY": "x" * 40, name: "ture"})
    assert str(info.value) == (f"{name} must be true or false (or 1/0, yes/no, on/off), got 'ture'")


def test_every_value_that_does_not_parse_is_named_at_once(tmp_path):
    env = {"JWT_EXPIRES_DAYS": "soon", "QUEUE_WORKERS": "0", "LLM_TIMEOUT_SECONDS": "1m"}
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env=env)
    assert str(info.value).splitlines() == [
        "JWT_EXPIRES_DAYS must be a whole number, got 'soon'",
        "LLM_TIMEOUT_SECONDS must be a number, got '1m'",
        "QUEUE_WORKERS must be 1 or more, got 0",
    ]
