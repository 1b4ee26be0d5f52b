"""Flask's ``app.config``, built from the settings (``app/settings.py``) when ``create_app``
runs (never at import time), and the checks of the configuration as a whole.

``load_config`` merges, lowest first: built-in defaults, ``.env`` (python-dotenv), the process
environment, then the override mapping passed to ``create_app``; the settings object reads and
types the first three, the overrides are laid over the mapping it fills, and the checks below
see the result. Production refuses to start without a real ``SECRET_KEY`` (long enough and
random-looking, ``secret_bits``); development generates one into ``instance/secret_key`` once
and reuses it. ``JWT_SECRET`` (optional) signs API tokens instead of ``SECRET_KEY``; production
refuses a weak one, or one equal to ``SECRET_KEY``. ``CORS_ORIGINS`` is checked here, overrides
included, so a bad entry stops the app at start instead of silently never matching.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.settings import ConfigError, Settings, bounds, cors_origins, out_of_bounds
from app.storage.base import parse_storage_url

ENVIRONMENTS = ("development", "production", "testing")
# Values that must never reach production as a signing key.
WEAK_SECRETS = {"", "changeme", "change-me", "dev", "secret", "development"}
# Settings that are not Flask keys of their own: DATABASE_URL becomes SQLALCHEMY_DATABASE_URI,
# the standard AWS names are fallbacks of ours.
NOT_FLASK_KEYS = {
    "DATABASE_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
}  # fmt: skip
# Settings with bounds (their fields' ge/le), checked again once overrides are laid over them.
BOUNDED = tuple(name for name in Settings.model_fields if bounds(name) != (None, None))

# Models a prompt version may choose, with a price per million tokens for cost estimates (USD,
# OpenAI's list prices when this was written; set MODELS to your own). ``openai`` / ``openrouter``
# are the ids on each provider's wire; a model without one is not sent to that provider.
BUILTIN_MODELS: tuple[dict[str, Any], ...] = (
    {"name": "gpt-4o-mini", "openai": "gpt-4o-mini", "openrouter": "openai/gpt-4o-mini",
     "input_per_million": 0.15, "output_per_million": 0.60},
    {"name": "gpt-4o", "openai": "gpt-4o", "openrouter": "openai/gpt-4o",
     "input_per_million": 2.50, "output_per_million": 10.00},
    {"name": "gpt-4.1-mini", "openai": "gpt-4.1-mini", "openrouter": "openai/gpt-4.1-mini",
     "input_per_million": 0.40, "output_per_million": 1.60},
    {"name": "gpt-4.1-nano", "openai": "gpt-4.1-nano", "openrouter": "openai/gpt-4.1-nano",
     "input_per_million": 0.10, "output_per_million": 0.40},
)  # fmt: skip


def builtin_models(openai_model: str, openrouter_model: str) -> tuple[dict[str, Any], ...]:
    """The built-in model list with the default model (``OPENAI_MODEL`` / ``OPENROUTER_MODEL``)
    first: what ``MODELS`` is when it is not set."""
    entries = [dict(entry) for entry in BUILTIN_MODELS]
    if not any(e["name"] == openai_model for e in entries):
        entries.insert(
            0,
            {"name": openai_model, "openai": openai_model, "openrouter": openrouter_model,
             "input_per_million": None, "output_per_million": None},
        )  # fmt: skip
    else:
        first = next(e for e in entries if e["name"] == openai_model)
        first["openrouter"] = openrouter_model
        entries.remove(first)
        entries.insert(0, first)
    return tuple(entries)


def _checked_models(entries: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
    names = [e["name"] for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"MODELS names a model twice: {', '.join(duplicates)}")
    return entries


def _weak(secret: str | None) -> bool:
    """Not fit to sign anything in production: missing, a known default, or short."""
    return not secret or secret.lower() in WEAK_SECRETS or len(secret) < 32


# A production secret must also look random (``_predictable``). Words that make a secret easy to
# guess however long it is, keyboard rows included; each costs a guesser a few bits, not a
# character's worth.
GUESSABLE_WORDS = (
    "password", "passwort", "secret", "changeme", "change-me", "admin", "letmein", "welcome",
    "prompthub", "default", "example", "token", "qwertyuiop", "asdfghjkl", "zxcvbnm", "qwerty",
)  # fmt: skip
SECRET_MIN_BITS = 80
_SECRET_SCAN = 256  # characters examined; enough to tell, and the scan stays quadratic at most


def secret_bits(secret: str) -> float:
    """A conservative estimate of how many bits of chance ``secret`` holds, in the spirit of
    LZ77 and zxcvbn: a character costs log2 of its alphabet (the character classes it uses, at
    most the number of distinct characters it has); a repeat of something earlier (3+
    characters), a run in steps of 0 or 1 (``aaaa``, ``1234``, ``zyx``) and a guessable word cost
    only a few bits. ``secrets.token_urlsafe(48)`` scores about 300; ``token_hex(16)`` about 100;
    ``'a' * 32`` 6, ``'abc' * 11`` 11, ``'password1234…'`` about 30."""
    text = secret[:_SECRET_SCAN]
    lowered, n = text.lower(), len(text)
    classes = (
        (26, str.islower), (26, str.isupper), (10, str.isdigit), (33, lambda c: not c.isalnum()),
    )  # fmt: skip
    alphabet = sum(size for size, member in classes if any(member(c) for c in text))
    per_char = math.log2(max(2, min(alphabet, len(set(text)))))
    bits, i = 0.0, 0
    while i < n:
        word = next((w for w in GUESSABLE_WORDS if lowered.startswith(w, i)), None)
        if word is not None:
            bits, i = bits + 4.0, i + len(word)
            continue
        longest = 0  # the longest earlier copy of what starts here (it may overlap, as in LZ77)
        for j in range(i):
            k = 0
            while i + k < n and text[j + k] == text[i + k]:
                k += 1
            longest = max(longest, k)
        if longest >= 3:  # where it starts and how long it is
            bits, i = bits + math.log2(i) + math.log2(longest), i + longest
            continue
        if i >= 2:
            step = ord(text[i]) - ord(text[i - 1])
            if abs(step) <= 1 and step == ord(text[i - 1]) - ord(text[i - 2]):
                bits, i = bits + 1.0, i + 1
                continue
        bits, i = bits + per_char, i + 1
    return bits


def _predictable(secret: str) -> bool:
    """Long enough but not random: patterns, runs, repeats, common words, few characters."""
    return secret_bits(secret) < SECRET_MIN_BITS


def normalise_database_url(url: str) -> str:
    """Point plain ``postgres://`` URLs at the psycopg 3 driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _dev_secret(instance_path: Path) -> str:
    path = instance_path / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def load_config(
    instance_path: Path,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build the Flask config mapping. ``overrides`` wins over everything (tests use it);
    ``env`` stands for ``.env`` and the environment (tests use it too)."""
    overrides = dict(overrides or {})
    s = Settings.load(env)
    app_env = overrides.get("APP_ENV") or s.APP_ENV
    if app_env not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {app_env!r}")
    production = app_env == "production"

    cookies_secure = production if s.SESSION_COOKIE_SECURE is None else s.SESSION_COOKIE_SECURE
    cfg: dict[str, Any] = {
        name: getattr(s, name) for name in Settings.model_fields if name not in NOT_FLASK_KEYS
    }
    cfg.update({
        "APP_ENV": app_env,
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(
            s.DATABASE_URL or f"sqlite:///{instance_path / 'prompthub.db'}"
        ),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": cookies_secure,
        "PERMANENT_SESSION_LIFETIME": timedelta(days=30),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": cookies_secure,
        # Flask-WTF: checked by our own before_request rule (bearer requests skip it), and
        # tokens live as long as the session so a chat tab left open keeps working.
        "WTF_CSRF_CHECK_DEFAULT": False,
        "WTF_CSRF_TIME_LIMIT": None,
        "MODELS": _checked_models(
            s.MODELS or builtin_models(s.OPENAI_MODEL, s.OPENROUTER_MODEL)
        ),
        "REPLY_SPOOL_DIR": s.REPLY_SPOOL_DIR or str(instance_path / "spool" / "replies"),
        "AUTH_REVOCATION_LOG": s.AUTH_REVOCATION_LOG
        or str(instance_path / "auth-revocations.log"),
        "QUEUE_IN_PROCESS": not production if s.QUEUE_IN_PROCESS is None else s.QUEUE_IN_PROCESS,
        "UPLOAD_DIR": s.UPLOAD_DIR or str(instance_path / "uploads"),
        "STORAGE_STAGING_DIR": s.STORAGE_STAGING_DIR or str(instance_path / "staging"),
        # boto3 is handed everything explicitly: ours first, then the standard AWS names.
        "STORAGE_S3_ENDPOINT_URL": s.STORAGE_S3_ENDPOINT_URL
        or s.AWS_ENDPOINT_URL_S3
        or s.AWS_ENDPOINT_URL,
        "STORAGE_S3_REGION": s.STORAGE_S3_REGION or s.AWS_REGION or s.AWS_DEFAULT_REGION,
        "RATELIMIT_HEADERS_ENABLED": True,
    })  # fmt: skip
    cfg.update(overrides)
    cfg["CORS_ORIGINS"] = cors_origins(cfg["CORS_ORIGINS"])
    try:
        storage = parse_storage_url(cfg["STORAGE_URL"])
    except ValueError as exc:
        raise ConfigError(f"STORAGE_URL: {exc}") from exc
    for key in ("CHAT_INPUT_MAX_CHARS", "USER_BUDGET_USD_DAY", "USER_BUDGET_USD_MONTH"):
        if not 0 <= cfg[key] < math.inf:  # NaN and infinity too
            raise ConfigError(f"{key} must be 0 (no cap) or a positive number, got {cfg[key]}")
    if storage.scheme == "s3" and cfg["STORAGE_S3_MAX_ATTEMPTS"] < 1:
        raise ConfigError("STORAGE_S3_MAX_ATTEMPTS must be 1 or more")
    for key in BOUNDED:
        problem = out_of_bounds(key, cfg[key])
        if problem:
            raise ConfigError(problem)
    queue = cfg["QUEUE_URL"] or ""
    schemes = ("redis://", "rediss://", "unix://", "sqlite:///", "memory://")
    if queue and not queue.startswith(schemes):
        raise ConfigError(f"QUEUE_URL must be redis://…, sqlite:///path or memory://: {queue!r}")
    # One upload request may carry MAX_UPLOAD_MB of file plus the multipart framing. Only upload
    # views get this cap; other bodies get MAX_JSON_KB or MAX_FORM_KB (app/edge.py).
    cfg.setdefault("MAX_CONTENT_LENGTH", cfg["MAX_UPLOAD_MB"] * 1024 * 1024 + 64 * 1024)
    if cfg["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        options = cfg["SQLALCHEMY_ENGINE_OPTIONS"] = dict(cfg["SQLALCHEMY_ENGINE_OPTIONS"])
        connect_args = options["connect_args"] = dict(options.get("connect_args") or {})
        connect_args.setdefault("connect_timeout", cfg["DB_CONNECT_TIMEOUT_SECONDS"])
        options.setdefault("pool_size", cfg["DB_POOL_SIZE"])
        options.setdefault("max_overflow", cfg["DB_MAX_OVERFLOW"])
    if cfg["APP_ENV"] == "testing":
        cfg["TESTING"] = True

    secret = cfg.get("SECRET_KEY")
    generate = '(python -c "import secrets; print(secrets.token_urlsafe(48))")'
    # Long enough is not enough: 'a' * 32 or 'password1234…' can be guessed (secret_bits).
    patterned = (
        "; this one is long enough but predictable (a repeated or sequential pattern, a common "
        "word, or too few different characters): generate one "
    )
    if production and _weak(secret):
        raise ConfigError(
            "SECRET_KEY must be set to a random value of at least 32 characters in production "
            + generate
        )
    if production and _predictable(secret):
        raise ConfigError("SECRET_KEY must be a random value in production" + patterned + generate)
    jwt_secret = cfg.get("JWT_SECRET") or None
    cfg["JWT_SECRET"] = jwt_secret
    if production and jwt_secret is not None and _weak(jwt_secret):
        raise ConfigError(
            "JWT_SECRET must be a random value of at least 32 characters in production, "
            "or unset (API tokens are then signed with SECRET_KEY) " + generate
        )
    if production and jwt_secret is not None and _predictable(jwt_secret):
        raise ConfigError("JWT_SECRET must be a random value in production" + patterned + generate)
    if production and jwt_secret is not None and jwt_secret == secret:
        # Equal keys give none of the separation JWT_SECRET is set for: rotating one would
        # rotate both, and a leak of one is a leak of both. Most likely a copy-paste slip.
        raise ConfigError(
            "JWT_SECRET must differ from SECRET_KEY in production "
            "(or leave it unset to sign API tokens with SECRET_KEY)"
        )
    metrics_token = cfg.get("METRICS_TOKEN")
    if production and metrics_token and (_weak(metrics_token) or _predictable(metrics_token)):
        raise ConfigError(
            "METRICS_TOKEN must be a random value of at least 32 characters in production, "
            "or unset (/metrics off) " + generate
        )
    if not secret:
        cfg["SECRET_KEY"] = _dev_secret(instance_path)
    return cfg
