"""Configuration: the only module that reads ``os.environ``.

``load_config`` runs inside ``create_app`` (never at import time). It merges, lowest first:
built-in defaults, ``.env`` (python-dotenv), the process environment, then the override mapping
passed to ``create_app``. Production refuses to start without a real ``SECRET_KEY`` (long enough
and random-looking, ``secret_bits``); development generates one into ``instance/secret_key`` once
and reuses it. ``JWT_SECRET`` (optional) signs API tokens instead of ``SECRET_KEY``; production
refuses a weak one, or one equal to ``SECRET_KEY``. ``CORS_ORIGINS`` is checked here, overrides
included, so a bad entry stops the app at start instead of silently never matching.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from app.filetypes import DEFAULT_ALLOWED, parse_extensions
from app.storage.base import parse_storage_url

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("development", "production", "testing")
# Values that must never reach production as a signing key.
WEAK_SECRETS = {"", "changeme", "change-me", "dev", "secret", "development"}


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message says which setting and why."""


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{key} must be a whole number, got {raw!r}") from exc


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{key} must be a number, got {raw!r}") from exc


def _str(env: Mapping[str, str], key: str, default: str | None = None) -> str | None:
    raw = env.get(key, "").strip()
    return raw or default


def _extensions(raw: str | None) -> tuple[str, ...]:
    """``UPLOAD_ALLOWED_EXTENSIONS``; the rules live with the types (``app/filetypes.py``)."""
    try:
        return parse_extensions(raw)
    except ValueError as exc:
        raise ConfigError(
            f"UPLOAD_ALLOWED_EXTENSIONS: {exc}. Built-in types: {' '.join(DEFAULT_ALLOWED)}; "
            "write builtin for all of them, and add other types with their dot, e.g. "
            "builtin,.docx,.zip"
        ) from exc


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
MODEL_KEYS = {"name", "openai", "openrouter", "input_per_million", "output_per_million"}


def _model_entry(raw: Any, index: int) -> dict[str, Any]:
    where = f"MODELS[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object with a name")
    unknown = set(raw) - MODEL_KEYS
    if unknown:
        raise ConfigError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 120:
        raise ConfigError(f"{where}.name must be a non-empty string of at most 120 characters")
    entry: dict[str, Any] = {"name": name.strip()}
    for key in ("openai", "openrouter"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{where}.{key} must be a model id or null")
        entry[key] = value.strip() if value else None
    if entry["openai"] is None and entry["openrouter"] is None:
        raise ConfigError(f"{where} names no provider model (openai and openrouter are both null)")
    for key in ("input_per_million", "output_per_million"):
        value = raw.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            raise ConfigError(f"{where}.{key} must be a price of 0 or more, or null")
        entry[key] = float(value) if value is not None else None
    return entry


def _models(env: Mapping[str, str]) -> tuple[dict[str, Any], ...]:
    """The model allowlist: ``MODELS`` (a JSON list of objects) or the built-in list, with the
    default model (``OPENAI_MODEL`` / ``OPENROUTER_MODEL``) first."""
    raw = env.get("MODELS", "").strip()
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"MODELS must be a JSON list of model objects: {exc}") from exc
        if not isinstance(parsed, list) or not parsed:
            raise ConfigError("MODELS must be a non-empty JSON list of model objects")
        entries = [_model_entry(item, i) for i, item in enumerate(parsed)]
    else:
        default_openai = _str(env, "OPENAI_MODEL", "gpt-4o-mini")
        default_openrouter = _str(env, "OPENROUTER_MODEL", "openai/gpt-4o-mini")
        entries = [dict(entry) for entry in BUILTIN_MODELS]
        if not any(e["name"] == default_openai for e in entries):
            entries.insert(
                0,
                {"name": default_openai, "openai": default_openai,
                 "openrouter": default_openrouter,
                 "input_per_million": None, "output_per_million": None},
            )  # fmt: skip
        else:
            first = next(e for e in entries if e["name"] == default_openai)
            first["openrouter"] = default_openrouter
            entries.remove(first)
            entries.insert(0, first)
    names = [e["name"] for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"MODELS names a model twice: {', '.join(duplicates)}")
    return tuple(entries)


# An origin as a browser sends it in ``Origin``: scheme, host, optional port; nothing else.
_ORIGIN = re.compile(
    r"(?P<scheme>https?)://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?",
    re.IGNORECASE,
)
_HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(entry: str) -> str:
    """One ``CORS_ORIGINS`` entry in the form browsers send: lower-case, default port dropped
    (``HTTPS://App.example.com:443`` is ``https://app.example.com``), else ``ConfigError``."""
    problem = ConfigError(
        f"CORS_ORIGINS entry {entry!r} is not an origin: write scheme://host[:port], "
        "e.g. https://app.example.com or http://localhost:3000 (http or https; no path, "
        "no trailing slash, no wildcard inside a name)"
    )
    match = _ORIGIN.fullmatch(entry)
    if match is None:
        raise problem
    scheme, host = match["scheme"].lower(), match["host"].lower()
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise problem from None
    elif not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
        raise problem
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 1 <= port <= 65535:
        raise problem
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def cors_origins(raw: str | Iterable[str] | None) -> tuple[str, ...]:
    """``CORS_ORIGINS`` (a comma list, or any iterable of entries from an override) as exact
    origins, each once, in the order given; ``("*",)`` for any origin. Empty: no CORS at all.

    ``*`` is allowed, alone: cross-origin requests are authenticated by bearer tokens only
    (``app/auth/loading.py``), never by cookies, so any origin can do no more than a client that
    already holds a token could do from anywhere."""
    entries = raw.split(",") if isinstance(raw, str) else list(raw or ())
    entries = [str(entry).strip() for entry in entries if str(entry).strip()]
    if "*" in entries:
        if len(entries) > 1:
            raise ConfigError(
                f"CORS_ORIGINS: '*' (any origin) must be the only entry; got {', '.join(entries)}"
            )
        return ("*",)
    return tuple(dict.fromkeys(_origin(entry) for entry in entries))


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


def read_environment(root: Path = ROOT) -> dict[str, str]:
    """``.env`` values overlaid by the real environment (the environment wins)."""
    file_values = {k: v for k, v in dotenv_values(root / ".env").items() if v is not None}
    return {**file_values, **os.environ}


def load_config(
    instance_path: Path,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build the Flask config mapping. ``overrides`` wins over everything (tests use it)."""
    overrides = dict(overrides or {})
    env = read_environment() if env is None else env
    app_env = overrides.get("APP_ENV") or _str(env, "APP_ENV", "development")
    if app_env not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {app_env!r}")
    production = app_env == "production"

    default_db = f"sqlite:///{instance_path / 'prompthub.db'}"
    cfg: dict[str, Any] = {
        "APP_ENV": app_env,
        "SECRET_KEY": _str(env, "SECRET_KEY"),
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(_str(env, "DATABASE_URL", default_db)),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        # A database that hangs instead of refusing (a blackholed address, a stuck server) is
        # given up on after this many seconds, so requests answer 503 instead of waiting on
        # the operating system's TCP timeout (PostgreSQL: libpq's connect_timeout).
        "DB_CONNECT_TIMEOUT_SECONDS": _int(env, "DB_CONNECT_TIMEOUT_SECONDS", 5),
        # PostgreSQL connections each web process keeps open, and how many more it may open
        # for a burst (closed again when returned). A gevent worker serves hundreds of requests
        # at once: with SQLAlchemy's default of 5 + 10, bursts of chat turns opened and closed
        # connections all the time (docs/benchmarks.md §15).
        "DB_POOL_SIZE": _int(env, "DB_POOL_SIZE", 20),
        "DB_MAX_OVERFLOW": _int(env, "DB_MAX_OVERFLOW", 10),
        "BCRYPT_ROUNDS": _int(env, "BCRYPT_ROUNDS", 12),
        "JWT_EXPIRES_DAYS": _int(env, "JWT_EXPIRES_DAYS", 7),
        # Signs and verifies API tokens; unset: SECRET_KEY does. Rotating it revokes every
        # token, not the browser sessions (SECRET_KEY signs those).
        "JWT_SECRET": _str(env, "JWT_SECRET"),
        # Origins whose pages may call /api/ from the browser (bearer tokens only): a comma
        # list of exact origins, or * for any. Empty: no CORS headers at all (app/cors.py).
        "CORS_ORIGINS": env.get("CORS_ORIGINS", ""),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool(env.get("SESSION_COOKIE_SECURE"), production),
        "PERMANENT_SESSION_LIFETIME": timedelta(days=30),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": _bool(env.get("SESSION_COOKIE_SECURE"), production),
        # Flask-WTF: checked by our own before_request rule (bearer requests skip it), and
        # tokens live as long as the session so a chat tab left open keeps working.
        "WTF_CSRF_CHECK_DEFAULT": False,
        "WTF_CSRF_TIME_LIMIT": None,
        "MAX_JSON_KB": _int(env, "MAX_JSON_KB", 256),
        # Every other body that is not an upload (page forms). A browser percent-encodes each
        # non-ASCII character (up to 12 bytes), so the longest prompt needs ~12 * PROMPT_MAX_CHARS.
        "MAX_FORM_KB": _int(env, "MAX_FORM_KB", 512),
        "PROMPT_MAX_CHARS": _int(env, "PROMPT_MAX_CHARS", 32_000),
        # Prompt versions kept per process for chat (PostgreSQL only; 0: off).
        "PROMPT_CACHE_SIZE": _int(env, "PROMPT_CACHE_SIZE", 256),
        # LLM providers: OpenAI Responses first, OpenRouter as fallback; neither key → offline.
        "OPENAI_API_KEY": _str(env, "OPENAI_API_KEY"),
        "OPENAI_BASE_URL": _str(env, "OPENAI_BASE_URL", "https://api.openai.com/v1"),
        "OPENAI_MODEL": _str(env, "OPENAI_MODEL", "gpt-4o-mini"),
        "OPENAI_STORE": _bool(env.get("OPENAI_STORE"), False),
        "OPENROUTER_API_KEY": _str(env, "OPENROUTER_API_KEY"),
        "OPENROUTER_BASE_URL": _str(env, "OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1"),
        "OPENROUTER_MODEL": _str(env, "OPENROUTER_MODEL", "openai/gpt-4o-mini"),
        "OPENROUTER_REFERER": _str(env, "OPENROUTER_REFERER"),
        "OPENROUTER_TITLE": _str(env, "OPENROUTER_TITLE", "PromptHub"),
        "LLM_TIMEOUT_SECONDS": _float(env, "LLM_TIMEOUT_SECONDS", 60.0),
        "LLM_CONNECT_TIMEOUT_SECONDS": _float(env, "LLM_CONNECT_TIMEOUT_SECONDS", 5.0),
        "LLM_RETRY_MAX_WAIT_SECONDS": _float(env, "LLM_RETRY_MAX_WAIT_SECONDS", 2.0),
        "LLM_MAX_OUTPUT_TOKENS": _int(env, "LLM_MAX_OUTPUT_TOKENS", 1024),
        # The models a prompt version may choose (first = the default for new versions), and
        # each one's provider ids and prices (see _models). MODELS overrides the built-in list.
        "MODELS": _models(env),
        "OFFLINE_TOKEN_DELAY_MS": _int(env, "OFFLINE_TOKEN_DELAY_MS", 15),
        "CHAT_HISTORY_MAX_MESSAGES": _int(env, "CHAT_HISTORY_MAX_MESSAGES", 40),
        # After a new conversation's first reply, one short call for a title (app/chat/titles.py).
        "CHAT_TITLES": _bool(env.get("CHAT_TITLES"), True),
        "CHAT_MESSAGE_MAX_CHARS": _int(env, "CHAT_MESSAGE_MAX_CHARS", 20_000),
        # The most one turn may send the model, in characters: system prompt, file text,
        # history and message together (~4 characters a token). 0: no cap.
        "CHAT_INPUT_MAX_CHARS": _int(env, "CHAT_INPUT_MAX_CHARS", 120_000),
        # What each user may spend on models (USD, estimated from the MODELS prices and the
        # tokens of every call; app/usage.py) per UTC day and calendar month. 0: no cap.
        "USER_BUDGET_USD_DAY": _float(env, "USER_BUDGET_USD_DAY", 5.0),
        "USER_BUDGET_USD_MONTH": _float(env, "USER_BUDGET_USD_MONTH", 50.0),
        "CHAT_HEARTBEAT_SECONDS": _float(env, "CHAT_HEARTBEAT_SECONDS", 15.0),
        "CHAT_STREAM_COALESCE_MS": _float(env, "CHAT_STREAM_COALESCE_MS", 25.0),
        # Durable replies: the assistant row is written at the start (``streaming``), its text
        # and lease checkpointed while it streams; a row whose lease ran out is ``interrupted``.
        "CHAT_CHECKPOINT_SECONDS": _float(env, "CHAT_CHECKPOINT_SECONDS", 5.0),
        "CHAT_REPLY_LEASE_SECONDS": _float(env, "CHAT_REPLY_LEASE_SECONDS", 30.0),
        # A reader the broker cannot serve reads the reply's row this often (seconds).
        "CHAT_RESUME_POLL_SECONDS": _float(env, "CHAT_RESUME_POLL_SECONDS", 1.0),
        # Turn events: in-process without REDIS_URL; Redis Streams with it (several processes
        # and machines). Kept this long after a turn's last event (seconds).
        "REDIS_URL": _str(env, "REDIS_URL"),
        "REDIS_KEY_PREFIX": _str(env, "REDIS_KEY_PREFIX", "prompthub:"),
        "TURN_EVENTS_TTL_SECONDS": _float(env, "TURN_EVENTS_TTL_SECONDS", 120.0),
        # Redis connections each process may open: commands (publish, Stop, counts) and
        # blocking reads of other processes' turns (beyond it, a reader reads the database).
        "REDIS_MAX_CONNECTIONS": _int(env, "REDIS_MAX_CONNECTIONS", 200),
        "REDIS_READ_CONNECTIONS": _int(env, "REDIS_READ_CONNECTIONS", 100),
        # Readers of turn events (GET /api/turns/<id>/events) open at once, per user and per
        # turn; beyond either a 429 (app/chat/readers.py). Across machines with Redis.
        "TURN_READERS_PER_USER": _int(env, "TURN_READERS_PER_USER", 20),
        "TURN_READERS_PER_TURN": _int(env, "TURN_READERS_PER_TURN", 5),
        # The final store retries this long; then the reply waits in REPLY_SPOOL_DIR until the
        # database is back (app/chat/replies.py).
        "CHAT_STORE_RETRY_SECONDS": _float(env, "CHAT_STORE_RETRY_SECONDS", 10.0),
        "REPLY_SPOOL_DIR": _str(env, "REPLY_SPOOL_DIR", str(instance_path / "spool" / "replies")),
        # A bearer token's user is read at most this often per process (0: every request);
        # "log out everywhere" reaches this machine's processes at once through the revocation
        # log, other machines within this many seconds (app/auth/token_cache.py).
        "AUTH_CACHE_SECONDS": _float(env, "AUTH_CACHE_SECONDS", 10.0),
        "AUTH_REVOCATION_LOG": _str(
            env, "AUTH_REVOCATION_LOG", str(instance_path / "auth-revocations.log")
        ),
        # Lease sweeps, spool replay and extraction sweeps run this often per process (0: off).
        "MAINTENANCE_SECONDS": _float(env, "MAINTENANCE_SECONDS", 10.0),
        "LOG_LEVEL": _str(env, "LOG_LEVEL", "INFO"),
        # The ``flask db`` commands (Flask-Migrate, Alembic). Web workers turn this off
        # (gunicorn.conf.py): they never migrate, and the import costs ~11 MB per process.
        "DB_MIGRATE_COMMANDS": _bool(env.get("DB_MIGRATE_COMMANDS"), True),
        # Project files: bytes under UPLOAD_DIR/<project id>/, text extracted for chat.
        "UPLOAD_DIR": _str(env, "UPLOAD_DIR", str(instance_path / "uploads")),
        "MAX_UPLOAD_MB": _int(env, "MAX_UPLOAD_MB", 20),
        # Storage quotas (app/files/quota.py): bytes per user (all projects) and per project,
        # files per project; and files per page-form upload (each costs one RATELIMIT_UPLOAD).
        "STORAGE_QUOTA_USER_MB": _int(env, "STORAGE_QUOTA_USER_MB", 1024),
        "STORAGE_QUOTA_PROJECT_MB": _int(env, "STORAGE_QUOTA_PROJECT_MB", 512),
        "STORAGE_QUOTA_PROJECT_FILES": _int(env, "STORAGE_QUOTA_PROJECT_FILES", 500),
        "UPLOAD_MAX_FILES_PER_REQUEST": _int(env, "UPLOAD_MAX_FILES_PER_REQUEST", 20),
        # Where the bytes live (app/storage/): empty = UPLOAD_DIR on this machine's disk;
        # s3://bucket/prefix = an S3-compatible store (docs/storage.md). Unknown schemes stop
        # the app at start.
        "STORAGE_URL": env.get("STORAGE_URL", "").strip(),
        # S3: uploads are staged (hashed, size-checked, sniffed) here before they are sent;
        # PDFs are copied here for the extraction sandbox. A local disk, not shared.
        "STORAGE_STAGING_DIR": _str(env, "STORAGE_STAGING_DIR", str(instance_path / "staging")),
        # The S3 endpoint (MinIO, SeaweedFS, R2, …); empty = AWS. The standard AWS variables
        # are read here too, so boto3 is handed everything explicitly.
        "STORAGE_S3_ENDPOINT_URL": _str(env, "STORAGE_S3_ENDPOINT_URL")
        or _str(env, "AWS_ENDPOINT_URL_S3")
        or _str(env, "AWS_ENDPOINT_URL"),
        "STORAGE_S3_REGION": _str(env, "STORAGE_S3_REGION")
        or _str(env, "AWS_REGION")
        or _str(env, "AWS_DEFAULT_REGION"),
        "AWS_ACCESS_KEY_ID": _str(env, "AWS_ACCESS_KEY_ID"),
        "AWS_SECRET_ACCESS_KEY": _str(env, "AWS_SECRET_ACCESS_KEY"),
        "AWS_SESSION_TOKEN": _str(env, "AWS_SESSION_TOKEN"),
        # Connect and read (idle) timeout per S3 call, and attempts per call (boto3's
        # "standard" retries: throttling, 5xx and connection errors).
        "STORAGE_S3_TIMEOUT_SECONDS": _float(env, "STORAGE_S3_TIMEOUT_SECONDS", 10.0),
        "STORAGE_S3_MAX_ATTEMPTS": _int(env, "STORAGE_S3_MAX_ATTEMPTS", 3),
        "UPLOAD_ALLOWED_EXTENSIONS": _extensions(env.get("UPLOAD_ALLOWED_EXTENSIONS")),
        # Sent as "purpose" with every OpenAI Files copy; the design names "assistants" (file
        # search and code interpreter take such files), docs/providers.md.
        "OPENAI_FILE_PURPOSE": _str(env, "OPENAI_FILE_PURPOSE", "assistants"),
        "CHAT_FILES_MAX_CHARS": _int(env, "CHAT_FILES_MAX_CHARS", 24_000),
        # PDF text is extracted after the upload returns, in a child process with these limits
        # (app/files/extraction.py); EXTRACT_WORKERS children at most per web process, each at
        # EXTRACT_NICE (added to the web process's niceness, 0-19); users are served in turn and
        # one user runs at most EXTRACT_PER_USER of them, so keep it below EXTRACT_WORKERS.
        "EXTRACT_WORKERS": _int(env, "EXTRACT_WORKERS", 2),
        "EXTRACT_PER_USER": _int(env, "EXTRACT_PER_USER", 1),
        "EXTRACT_NICE": _int(env, "EXTRACT_NICE", 10),
        "EXTRACT_CPU_SECONDS": _int(env, "EXTRACT_CPU_SECONDS", 30),
        "EXTRACT_MEMORY_MB": _int(env, "EXTRACT_MEMORY_MB", 512),
        "EXTRACT_WALL_SECONDS": _float(env, "EXTRACT_WALL_SECONDS", 90.0),
        "EXTRACT_MAX_PAGES": _int(env, "EXTRACT_MAX_PAGES", 1000),
        # Rate limits (Flask-Limiter); "N per minute|hour|day", see limits.py.
        "RATELIMIT_ENABLED": _bool(env.get("RATELIMIT_ENABLED"), True),
        "RATELIMIT_STORAGE_URI": _str(env, "RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_KEY_PREFIX": _str(env, "RATELIMIT_KEY_PREFIX", "prompthub"),
        "RATELIMIT_LOGIN": _str(env, "RATELIMIT_LOGIN", "20 per minute"),
        "RATELIMIT_LOGIN_ACCOUNT": _str(env, "RATELIMIT_LOGIN_ACCOUNT", "10 per minute"),
        "RATELIMIT_REGISTER": _str(env, "RATELIMIT_REGISTER", "10 per hour"),
        "RATELIMIT_CHAT": _str(env, "RATELIMIT_CHAT", "30 per minute"),
        "RATELIMIT_UPLOAD": _str(env, "RATELIMIT_UPLOAD", "60 per minute"),
        "RATELIMIT_TURN_EVENTS": _str(env, "RATELIMIT_TURN_EVENTS", "120 per minute"),
        # Behind a reverse proxy: trust one hop of X-Forwarded-For/-Proto/-Host.
        "TRUST_PROXY": _bool(env.get("TRUST_PROXY"), False),
    }
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
    for key in (
        "TURN_READERS_PER_USER",
        "TURN_READERS_PER_TURN",
        "REDIS_MAX_CONNECTIONS",
        "REDIS_READ_CONNECTIONS",
        "STORAGE_QUOTA_USER_MB",
        "STORAGE_QUOTA_PROJECT_MB",
        "STORAGE_QUOTA_PROJECT_FILES",
        "UPLOAD_MAX_FILES_PER_REQUEST",
        "EXTRACT_WORKERS",
        "EXTRACT_PER_USER",
    ):
        if cfg[key] < 1:
            raise ConfigError(f"{key} must be 1 or more, got {cfg[key]}")
    if not 0 <= cfg["EXTRACT_NICE"] <= 19:
        raise ConfigError("EXTRACT_NICE must be between 0 and 19 (added to the web process's)")
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
    if not secret:
        cfg["SECRET_KEY"] = _dev_secret(instance_path)
    return cfg
