"""The settings: every one the app reads from the environment, typed, with its default and its
description, declared once (``Settings``); ``.env.example`` and README's table are generated
from it (``app/settings_doc.py``).

Where values come from: ``.env`` (python-dotenv) overlaid by the process environment, the
environment winning (``read_environment``), or a mapping given to ``Settings.load`` (tests).
Names are exact (upper case); a value is stripped, and an empty one means the default. A value
that does not parse stops the app at start with ``ConfigError`` naming the setting, what it
expects and what it got. Checks that span settings, or that must also see the overrides
``create_app`` is given (production secrets, storage and queue URLs, caps), are
``app/config.py``'s, which turns the settings into Flask's ``app.config``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.filetypes import DEFAULT_ALLOWED, parse_extensions

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message says which setting and why."""


# --- where values come from ---------------------------------------------------------------------


def read_environment(root: Path = ROOT) -> dict[str, str]:
    """``.env`` values overlaid by the real environment (the environment wins)."""
    file_values = {k: v for k, v in dotenv_values(root / ".env").items() if v is not None}
    return {**file_values, **os.environ}


_GIVEN: ContextVar[Mapping[str, str] | None] = ContextVar("settings_given", default=None)


class Environment(PydanticBaseSettingsSource):
    """The one source: the mapping ``Settings.load`` was given, else ``read_environment()``.
    Only declared names are read, exactly as spelled; blank values are left out (the default)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        given = _GIVEN.get()
        env = read_environment() if given is None else given
        values = {}
        for name in self.settings_cls.model_fields:
            raw = env.get(name)
            if raw is not None and str(raw).strip():
                values[name] = str(raw).strip()
        return values


# --- how a value is read ------------------------------------------------------------------------

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _whole(raw: Any) -> Any:
    try:
        return int(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ValueError("must be a whole number") from None


def _number(raw: Any) -> Any:
    try:
        return float(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ValueError("must be a number") from None


def _flag(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise ValueError("must be true or false (or 1/0, yes/no, on/off)")


def _extensions(raw: Any) -> Any:
    """``UPLOAD_ALLOWED_EXTENSIONS``; the rules live with the types (``app/filetypes.py``)."""
    if not isinstance(raw, str):
        return raw
    try:
        return parse_extensions(raw)
    except ValueError as exc:
        raise ConfigError(
            f"UPLOAD_ALLOWED_EXTENSIONS: {exc}. Built-in types: {' '.join(DEFAULT_ALLOWED)}; "
            "write builtin for all of them, and add other types with their dot, e.g. "
            "builtin,.docx,.zip"
        ) from exc


Whole = Annotated[int, BeforeValidator(_whole)]
Number = Annotated[float, BeforeValidator(_number)]
Flag = Annotated[bool, BeforeValidator(_flag)]


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


def cors_origins(raw: Any) -> tuple[str, ...]:
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


def _models(raw: Any) -> Any:
    """``MODELS``: a non-empty JSON list of model objects (``_model_entry``)."""
    if not isinstance(raw, str):
        return raw
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"MODELS must be a JSON list of model objects: {exc}") from exc
    if not isinstance(parsed, list) or not parsed:
        raise ConfigError("MODELS must be a non-empty JSON list of model objects")
    return tuple(_model_entry(item, i) for i, item in enumerate(parsed))


# --- how a setting is declared ------------------------------------------------------------------

# The groups of .env.example and README's table, in order: a title and what applies to all of
# the group's settings. The settings of a group follow its title below.
GROUPS: dict[str, str] = {}


def group(title: str, intro: str = "") -> Callable[..., Any]:
    """A ``Field`` factory for the settings of one group. ``description``: what the setting does
    (``.env.example``'s comment, README's "meaning"); None: described together with the setting
    before it. ``shown``: the default as README says it, when it is computed (``None`` fields) or
    reads better in words. ``example``: the value ``.env.example`` writes, when not the default.
    Other keywords are constraints (``ge``, ``le``)."""
    GROUPS[title] = intro

    def field(
        default: Any,
        description: str | None = None,
        *,
        shown: str | None = None,
        example: str | None = None,
        **constraints: Any,
    ) -> Any:
        extra = {"group": title, "shown": shown, "example": example}
        return Field(default, description=description, json_schema_extra=extra, **constraints)

    return field


general = group("")
providers = group(
    "Language model providers",
    "OpenAI Responses API is tried first, OpenRouter chat completions is the fallback. A provider "
    "without a key is skipped. With neither key, chat uses the offline demo model (canned "
    "replies).",
)
chat = group("Chat")
jobs = group("Background jobs (app/jobs.py)")
files = group("Files")
limits = group("Rate limits (Flask-Limiter)")
proxy = group("Behind a reverse proxy")
METRICS = 'Metrics and traces (docs/deploy.md, "Metrics and traces")'
observe = group(METRICS)

GENERATE = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


class Settings(BaseSettings):
    """Every setting, in the order and groups of ``.env.example``. ``Settings.load()`` reads
    them; ``app/config.py`` turns them into ``app.config``."""

    model_config = SettingsConfigDict(
        frozen=True, case_sensitive=True, extra="ignore", validate_default=False
    )

    APP_ENV: Literal["development", "production", "testing"] = general(
        "development",
        "development | production | testing. Production refuses a missing or weak SECRET_KEY "
        "(short, a known default, or predictable: 'a' * 32, repeats, runs, common words) and "
        "marks cookies Secure.",
    )
    SECRET_KEY: str | None = general(
        None,
        "Signs sessions, CSRF tokens, and API tokens unless JWT_SECRET is set. Development "
        "generates one into instance/secret_key.\n"
        f"Generate: {GENERATE}",
        shown="generated into `instance/` (development only)",
    )
    DATABASE_URL: str | None = general(
        None,
        "SQLAlchemy URL. Default: SQLite at instance/prompthub.db. PostgreSQL (production "
        "target):\npostgresql://user:password@127.0.0.1:5432/prompthub  (psycopg 3 is used "
        "automatically)",
        shown="`sqlite:///instance/prompthub.db`",
    )
    DB_CONNECT_TIMEOUT_SECONDS: Whole = general(
        5,
        "PostgreSQL: give up connecting after this many seconds (a hanging database answers "
        "503), so requests answer instead of waiting on the operating system's TCP timeout "
        "(libpq's connect_timeout).",
    )
    DB_POOL_SIZE: Whole = general(
        20,
        "PostgreSQL connections each web process keeps open, and how many more it may open for "
        "a burst (closed again when returned; docs/benchmarks.md §15).\n"
        "Per machine: (DB_POOL_SIZE + DB_MAX_OVERFLOW) x WEB_CONCURRENCY must stay below the "
        "server's max_connections (100 by default) with room for every other machine and tool.",
    )
    DB_MAX_OVERFLOW: Whole = general(10)
    SESSION_COOKIE_SECURE: Flag | None = general(
        None,
        "Mark session cookies Secure (HTTPS only). Default: on in production, off otherwise.",
        shown="`true` in production, else `false`",
    )
    BCRYPT_ROUNDS: Whole = general(12, "bcrypt cost for password hashes.")
    JWT_EXPIRES_DAYS: Whole = general(7, "Lifetime of API bearer tokens (JWT, HS256), in days.")
    JWT_SECRET: str | None = general(
        None,
        "Signs API tokens instead of SECRET_KEY (empty: SECRET_KEY signs them). Changing it "
        "revokes every API token but no browser session. Production refuses one shorter than "
        "32 characters, a known default, a predictable one, or one equal to SECRET_KEY. "
        "Generate it like SECRET_KEY.",
        shown="– (`SECRET_KEY` signs tokens)",
    )
    AUTH_CACHE_SECONDS: Number = general(
        10.0,
        "Each web process keeps a bearer token's user this long (seconds) instead of reading it "
        'on every API request; 0 reads it every time. "Log out everywhere" reaches every '
        "process of the same machine at once through AUTH_REVOCATION_LOG (default: "
        "instance/auth-revocations.log, an append-only file of user ids; keep it on a local "
        "disk all the machine's workers share), other machines at once through Redis pub/sub "
        "when REDIS_URL is set (channel <REDIS_KEY_PREFIX>auth-revoked), and within "
        "AUTH_CACHE_SECONDS without Redis or while it is down.",
    )
    AUTH_REVOCATION_LOG: str | None = general(None, shown="`instance/auth-revocations.log`")
    CORS_ORIGINS: Annotated[tuple[str, ...], BeforeValidator(cors_origins)] = general(
        (),
        "Browser apps on other origins that may call /api/ (CORS), as a comma list of exact "
        "origins: scheme://host[:port], e.g. https://app.example.com,http://localhost:3000 "
        "(no path, no trailing slash); * alone for any origin. Empty: no CORS headers at all "
        "(app/cors.py). Such requests must send a bearer token: cookies never count on a "
        "request from another origin, and credentials are never allowed.",
        shown="– (no CORS)",
    )
    MAX_JSON_KB: Whole = general(
        256,
        "Largest JSON request body accepted by the API, in KiB (larger: 413, chunked bodies too).",
    )
    MAX_FORM_KB: Whole = general(
        512,
        "Largest form body a page accepts (anything but an upload), in KiB (larger: 413). "
        "Browsers send non-ASCII text percent-encoded (up to 12 bytes a character): keep it "
        "above 12 * PROMPT_MAX_CHARS.",
    )
    PROMPT_MAX_CHARS: Whole = general(32_000, "Longest system prompt version, in characters.")
    PROMPT_CACHE_SIZE: Whole = general(
        256,
        "Prompt versions each process keeps in memory, so a chat turn does not read its version "
        "from the database (a version never changes; the project's pointer says which one "
        "serves). Used on PostgreSQL only (SQLite can reuse a deleted row's id). 0 turns it "
        "off.",
    )
    LOG_LEVEL: str = general("INFO", "Log level: DEBUG, INFO, WARNING, ERROR.")
    DB_MIGRATE_COMMANDS: Flag = general(
        True,
        "Load the `flask db` migration commands (Flask-Migrate). gunicorn.conf.py sets it false "
        "for the web workers, which never migrate (saves ~11 MB per worker).",
    )

    # --- language model providers
    OPENAI_API_KEY: str | None = providers(
        None, "OpenAI (tried first): the API key, base URL and default model."
    )
    OPENAI_BASE_URL: str = providers("https://api.openai.com/v1")
    OPENAI_MODEL: str = providers("gpt-4o-mini")
    OPENAI_STORE: Flag = providers(
        False,
        'Sent as "store" on every Responses call. Our database keeps the history, so the '
        "default is off.",
    )
    OPENROUTER_API_KEY: str | None = providers(
        None, "OpenRouter (the fallback): the API key, base URL and default model."
    )
    OPENROUTER_BASE_URL: str = providers("https://openrouter.ai/api/v1")
    OPENROUTER_MODEL: str = providers("openai/gpt-4o-mini")
    OPENROUTER_REFERER: str | None = providers(
        None, "Optional OpenRouter attribution headers (HTTP-Referer, X-Title)."
    )
    OPENROUTER_TITLE: str = providers("PromptHub")
    LLM_TIMEOUT_SECONDS: Number = providers(
        60.0, "Read (idle) timeout per provider call, and connect timeout, in seconds."
    )
    LLM_CONNECT_TIMEOUT_SECONDS: Number = providers(5.0)
    LLM_RETRY_MAX_WAIT_SECONDS: Number = providers(
        2.0,
        "A provider's retry-after longer than this skips the retry and falls back at once "
        "(seconds).",
    )
    LLM_MAX_OUTPUT_TOKENS: Whole = providers(
        1024,
        "max_output_tokens (OpenAI) / max_tokens (OpenRouter, always sent); a version's max "
        "output tokens may not exceed it.",
    )
    MODELS: Annotated[tuple[dict[str, Any], ...] | None, BeforeValidator(_models)] = providers(
        None,
        "The models a prompt version may choose (the Prompt tab's picker, GET /api/models), as "
        "a JSON list; the first is the default for new versions. Each entry: name (what "
        "versions store), openai and openrouter (the id on each provider; null: never sent "
        "there), input_per_million and output_per_million (USD, for the cost estimates). "
        "Empty: a built-in list of OpenAI models with OpenAI's list prices, OPENAI_MODEL / "
        "OPENROUTER_MODEL first. Example:\n"
        'MODELS=[{"name": "gpt-4o-mini", "openai": "gpt-4o-mini", "openrouter": '
        '"openai/gpt-4o-mini", "input_per_million": 0.15, "output_per_million": 0.6}, '
        '{"name": "claude-haiku", "openai": null, "openrouter": "anthropic/claude-3.5-haiku", '
        '"input_per_million": 0.8, "output_per_million": 4}]',
        shown="OpenAI's gpt-4o-mini, gpt-4o, gpt-4.1-mini, gpt-4.1-nano",
    )
    OFFLINE_TOKEN_DELAY_MS: Whole = providers(
        15,
        "Delay between words of the offline demo model, in milliseconds (so streaming is visible).",
    )

    # --- chat
    CHAT_HISTORY_MAX_MESSAGES: Whole = chat(
        40, "How many earlier messages each turn sends to the model (newest kept)."
    )
    CHAT_TITLES: Flag = chat(
        True,
        "After a new conversation's first complete reply, ask the model for a short title (one "
        "small extra call on each provider's default model, a background job; "
        "app/chat/titles.py); false keeps the first message, cut to 60 characters.",
    )
    CHAT_MESSAGE_MAX_CHARS: Whole = chat(20_000, "Longest user message, in characters.")
    CHAT_INPUT_MAX_CHARS: Whole = chat(
        120_000,
        "The most one turn may send the model, in characters (about 4 a token): system prompt, "
        "file text, earlier messages and the message together. Over it the turn is refused "
        "(422 input_too_long) before the provider is called. 0: no cap.",
    )
    USER_BUDGET_USD_DAY: Number = chat(
        5.0,
        "What each user may spend on models, in USD, per UTC day and per calendar month: the "
        "tokens of every reply (and title) at the MODELS prices, estimated from characters "
        "where the provider reports none (app/usage.py). Once reached, turns are refused (429 "
        "budget_exceeded, Retry-After until the reset) before the provider is called. 0: no "
        "cap. A listed model without a price counts no dollars; a model MODELS no longer lists "
        "is charged at the dearest listed price.",
    )
    USER_BUDGET_USD_MONTH: Number = chat(50.0)
    CHAT_HEARTBEAT_SECONDS: Number = chat(
        15.0,
        "While the model is silent, a keep-alive comment is sent on the stream this often "
        "(seconds). It also bounds how long a client that went away meanwhile keeps the "
        "provider request open.",
    )
    CHAT_STREAM_COALESCE_MS: Number = chat(
        25.0,
        "After the first token, deltas arriving within this window are sent as one event, and "
        "the provider's stream is read at most once per window (ms; 0: one event and one read "
        "per provider delta). Less work per token; the first token is never delayed, the last "
        "by at most the window, and nothing waits once the provider's text is over.",
    )
    CHAT_CHECKPOINT_SECONDS: Number = chat(
        5.0,
        'The reply row is written when the turn starts ("streaming"); its text so far is '
        "stored at most this often while it streams (seconds), renewing its lease.",
    )
    CHAT_REPLY_LEASE_SECONDS: Number = chat(
        30.0,
        'A reply whose process stopped renewing its lease for this long is marked "interrupted"'
        " (seconds; keep it above CHAT_HEARTBEAT_SECONDS and CHAT_CHECKPOINT_SECONDS).",
    )
    CHAT_WRITER_TTL_SECONDS: Number = chat(
        3.0,
        "With REDIS_URL: every process writing replies renews a heartbeat key this long-lived "
        "(seconds, every third of it); a reader on another process that finds the key gone "
        'ends the reply as "interrupted" at once, with all the text Redis holds, instead of '
        "waiting for the lease.",
    )
    DRAIN_SECONDS: Number = chat(
        20.0,
        "On SIGTERM (a deploy, a node stop) a worker lets its replies run this long (seconds), "
        'then stores the rest as "interrupted" with their text and tells their readers '
        "(app/chat/drain.py). Keep it at least 3 s below gunicorn's graceful_timeout (30), "
        "which ends the worker regardless.",
    )
    CHAT_RESUME_POLL_SECONDS: Number = chat(
        1.0,
        "A reader the broker cannot serve (another process without Redis) reads the reply's "
        "row this often (seconds).",
    )
    REDIS_URL: str | None = chat(
        None,
        "Turn events (replies streaming to any number of readers, resume, Stop from anywhere): "
        "in this process without REDIS_URL; Redis Streams with it (several workers and "
        'machines; "log out everywhere" then reaches every machine at once through pub/sub), '
        "e.g. REDIS_URL=redis://127.0.0.1:6379/0. Keys start with REDIS_KEY_PREFIX and expire"
        " TURN_EVENTS_TTL_SECONDS after a turn's last event (the database keeps the reply).",
    )
    REDIS_KEY_PREFIX: str = chat("prompthub:")
    TURN_EVENTS_TTL_SECONDS: Number = chat(120.0)
    REDIS_MAX_CONNECTIONS: Whole = chat(
        200,
        "Redis connections each process may open: commands (publish, Stop, counts), and "
        "waiting reads of replies other processes generate (a reader beyond it reads the "
        "database instead).",
        ge=1,
    )
    REDIS_READ_CONNECTIONS: Whole = chat(100, ge=1)
    TURN_READERS_PER_USER: Whole = chat(
        20,
        "Readers of a reply's events (GET /api/turns/<id>/events) open at once, per user and "
        "per reply; beyond either a 429 too_many_readers (app/chat/readers.py). Across "
        "machines with REDIS_URL, else per process.",
        ge=1,
    )
    TURN_READERS_PER_TURN: Whole = chat(5, ge=1)
    CHAT_STORE_RETRY_SECONDS: Number = chat(
        10.0,
        "When the database is unreachable as a reply ends, its final store is retried this "
        "long (seconds); then the reply waits in REPLY_SPOOL_DIR and is written when the "
        "database is back (app/chat/replies.py). REPLY_SPOOL_DIR: keep it on a persistent "
        "local disk.",
    )
    REPLY_SPOOL_DIR: str | None = chat(None, shown="`instance/spool/replies`")
    MAINTENANCE_SECONDS: Number = chat(
        10.0,
        "The worker queues the chores (reply lease sweep, spool replay, extraction sweep) this "
        "often (seconds; 0 turns them off; app/maintenance.py).",
    )

    # --- background jobs
    QUEUE_URL: str | None = jobs(
        None,
        "Where jobs wait: unset means REDIS_URL when it is set, else an SQLite file "
        "instance/queue.db (no other service). Or redis://host:6379/2, "
        "sqlite:////var/lib/prompthub/queue.db, memory:// (one process only).",
        shown="`REDIS_URL`, else `sqlite:///instance/queue.db`",
    )
    QUEUE_IN_PROCESS: Flag | None = jobs(
        None,
        "true: the web process runs jobs itself (the default outside production, so `make run` "
        'works alone). Production: false, and run `flask worker` (Procfile "worker") beside '
        "the web server.",
        shown="`true` outside production, else `false`",
    )
    QUEUE_WORKERS: Whole = jobs(
        4, "Threads of `flask worker` (and of the web process with QUEUE_IN_PROCESS).", ge=1
    )

    # --- files
    STORAGE_URL: str = files(
        "",
        "Where project files' bytes live. Empty: on this machine's disk, under "
        "UPLOAD_DIR/<project id>/ with generated names. s3://bucket/prefix: in an "
        "S3-compatible object store (AWS S3, MinIO, SeaweedFS, R2, ...), as <prefix>/<project "
        "id>/<generated name>; the bucket must exist (the server refuses to start otherwise; "
        "docs/storage.md). Anything else stops the app at start. Moving existing files: flask "
        'files migrate-storage (docs/deploy.md, "Object storage").',
        shown="– (the local `UPLOAD_DIR`)",
    )
    UPLOAD_DIR: str | None = files(
        None,
        "Project files when STORAGE_URL is empty (and what flask files migrate-storage copies "
        "from).",
        shown="`instance/uploads`",
    )
    STORAGE_STAGING_DIR: str | None = files(
        None,
        "With S3: uploads are staged here (hashed, size-checked, type-checked) before they are "
        "sent, and PDFs are copied here for the text extraction sandbox. A local disk, not "
        "shared; files are removed at once.",
        shown="`instance/staging`",
    )
    STORAGE_S3_ENDPOINT_URL: str | None = files(
        None,
        "The S3 endpoint for a store other than AWS (MinIO, SeaweedFS, R2, ...), e.g. "
        "http://127.0.0.1:8333. Empty: the standard AWS_ENDPOINT_URL_S3, then "
        "AWS_ENDPOINT_URL, then AWS itself.",
        shown="AWS",
    )
    AWS_ENDPOINT_URL_S3: str | None = files(None)
    AWS_ENDPOINT_URL: str | None = files(None)
    STORAGE_S3_REGION: str | None = files(
        None, "The bucket's region. Empty: AWS_REGION, then AWS_DEFAULT_REGION."
    )
    AWS_REGION: str | None = files(None)
    AWS_DEFAULT_REGION: str | None = files(None)
    AWS_ACCESS_KEY_ID: str | None = files(
        None,
        "Credentials for the store (passed to boto3 as they are). Empty: boto3's own chain "
        "(shared files, an instance or task role).",
    )
    AWS_SECRET_ACCESS_KEY: str | None = files(None)
    AWS_SESSION_TOKEN: str | None = files(None)
    STORAGE_S3_TIMEOUT_SECONDS: Number = files(
        10.0,
        "Connect and read timeout per S3 call (seconds), and attempts per call (boto3's "
        "standard retries of connection errors, 5xx and throttling; then 503 "
        "storage_unavailable).",
    )
    STORAGE_S3_MAX_ATTEMPTS: Whole = files(3)
    MAX_UPLOAD_MB: Whole = files(
        20,
        "Largest file, in MB (an upload request may be this plus a little multipart framing).",
    )
    STORAGE_QUOTA_USER_MB: Whole = files(
        1024,
        "Storage quotas (1 MB = 1,048,576 bytes; app/files/quota.py): all of a user's files, "
        "one project's files, and the number of files in one project. A file that would cross "
        "one is refused (413 storage_quota_exceeded), neither stored nor copied to OpenAI.",
        ge=1,
    )
    STORAGE_QUOTA_PROJECT_MB: Whole = files(512, ge=1)
    STORAGE_QUOTA_PROJECT_FILES: Whole = files(500, ge=1)
    UPLOAD_MAX_FILES_PER_REQUEST: Whole = files(
        20,
        "Files one page-form upload may carry (more: nothing is stored; each costs one "
        "RATELIMIT_UPLOAD). The API takes one per request.",
        ge=1,
    )
    UPLOAD_ALLOWED_EXTENSIONS: Annotated[tuple[str, ...], BeforeValidator(_extensions)] = files(
        DEFAULT_ALLOWED,
        "The file types that may be uploaded: a comma list, exactly the allowed set (case does "
        "not matter). Empty = every built-in type (text, Markdown, CSV, JSON, code, PDF, "
        "images); those are checked against their bytes and can give text for chat.\n"
        "  - built-in types by extension, with or without the dot: md,txt (as before, such a "
        "list restricts uploads to those types);\n"
        "  - builtin = all built-in types;\n"
        "  - added types, written WITH their dot: .docx,.xlsx,.zip. They are kept exactly as "
        "uploaded     (stored, downloaded as application/octet-stream attachments, copied to "
        "OpenAI), never read, never used in chat.\n"
        "Add types to the built-in ones:   UPLOAD_ALLOWED_EXTENSIONS=builtin,.docx,.xlsx,.zip\n"
        "A bad entry stops the app at start with the reason: exe (an added type needs its dot),"
        " .tar.gz (only the last part of a name counts: .gz), paths, spaces between types.",
        shown="the built-in types: text, Markdown, CSV, JSON, code, PDF, images",
        example="",
    )
    OPENAI_FILE_PURPOSE: str = files(
        "assistants",
        '"purpose" of the OpenAI Files copy made of each upload when OPENAI_API_KEY is set. '
        "The design says assistants (what file search and code interpreter use; "
        "docs/providers.md); user_data was the default before.",
    )
    CHAT_FILES_MAX_CHARS: Whole = files(
        24_000,
        'Characters of text from files marked "use in chat" added to each turn\'s instructions.',
    )
    EXTRACT_WORKERS: Whole = files(
        2,
        "PDF text is extracted after the upload answers, in a child process with these limits "
        "(app/files/extraction.py, a job of the queue). A PDF that passes one is marked "
        '"too complex to extract". Children at once, per worker process.',
        ge=1,
    )
    EXTRACT_PER_USER: Whole = files(
        1,
        "Users are served in turn; one user's children at once, on all workers together (keep "
        "it below EXTRACT_WORKERS so another user's PDF starts at once).",
        ge=1,
    )
    EXTRACT_NICE: Whole = files(
        10,
        "Niceness added to each child (0-19): web workers win the CPU while a PDF is parsed.",
        ge=0,
        le=19,
    )
    EXTRACT_CPU_SECONDS: Whole = files(
        30,
        "CPU seconds, address space in MB, and wall-clock seconds per file; pages read at most.",
    )
    EXTRACT_MEMORY_MB: Whole = files(512)
    EXTRACT_WALL_SECONDS: Number = files(90.0)
    EXTRACT_MAX_PAGES: Whole = files(1000)

    # --- rate limits
    RATELIMIT_ENABLED: Flag = limits(True, "Rate limits on or off.")
    RATELIMIT_STORAGE_URI: str = limits(
        "memory://",
        "memory:// counts per process; in production use Redis (e.g. redis://127.0.0.1:6379) so "
        "every worker and machine shares counts. While that Redis is down each process counts "
        "on its own and serves on (/readyz: ratelimit).",
    )
    RATELIMIT_KEY_PREFIX: str = limits("prompthub", "Prefix of the rate-limit keys.")
    RATELIMIT_LOGIN: str = limits(
        "20 per minute",
        'Limits are written "N per minute|hour|day" (app/limits.py). Login attempts per client '
        "address, and per target account (email) from anywhere.",
    )
    RATELIMIT_LOGIN_ACCOUNT: str = limits("10 per minute")
    RATELIMIT_REGISTER: str = limits(
        "10 per hour",
        "Registrations per client address, page and API together (a taken email answers 409, "
        "so this also bounds probing for accounts).",
    )
    RATELIMIT_CHAT: str = limits(
        "30 per minute",
        "Chat turns and uploaded files per user (each file of a page-form upload counts, and "
        'each "Retry the copy" to OpenAI).',
    )
    RATELIMIT_UPLOAD: str = limits("60 per minute")
    RATELIMIT_LABELS: str = limits(
        "60 per minute",
        "Creating, moving and deleting prompt labels per user, page and API together.",
    )
    RATELIMIT_CONVERSATION_EDITS: str = limits(
        "120 per minute",
        "Renaming a conversation or setting its template variables, per user.",
    )
    RATELIMIT_TURN_EVENTS: str = limits(
        "120 per minute",
        "Attaching to a reply's events (resumed connections, Compare columns), per user.",
    )
    RATELIMIT_KEYS: str = limits(
        "30 per hour",
        "Creating and revoking API keys per user, page and API together.",
    )
    RATELIMIT_OPENAI_USER: str = limits(
        "300 per minute",
        "Calls to the OpenAI-compatible endpoints (/v1) per user, all keys together; each key "
        "also has its own per-minute rate (API_KEY_RATE_PER_MINUTE).",
    )
    API_KEY_RATE_PER_MINUTE: Whole = limits(
        60,
        "Calls per minute of one API key on /v1 unless the key sets its own, which may not "
        "exceed API_KEY_RATE_MAX.",
        ge=1,
    )
    API_KEY_RATE_MAX: Whole = limits(600, ge=1)
    API_KEYS_MAX: Whole = limits(50, "Active (not revoked) API keys per user.", ge=1)
    RATELIMIT_SHARE_VISITOR: str = limits(
        "10 per minute",
        "Messages one visitor of a share link may send on it (the visitor's cookie; a visitor "
        "without one counts by address).",
    )
    RATELIMIT_SHARE_LINK: str = limits(
        "120 per minute",
        "Messages one share link takes from all its visitors together.",
    )
    RATELIMIT_SHARE_UNLOCK: str = limits(
        "10 per 10 minutes",
        "Passcode attempts on one share link per client address.",
    )
    RATELIMIT_SHARE_LINKS: str = limits(
        "30 per hour",
        "Creating and revoking share links per user, page and API together.",
    )
    SHARE_LINKS_MAX: Whole = limits(20, "Active (not revoked) share links per project.", ge=1)

    # --- behind a reverse proxy
    TRUST_PROXY: Flag = proxy(
        False,
        "Trust one hop of X-Forwarded-For/-Proto/-Host (client address for limits, HTTPS for "
        "HSTS).",
    )

    # --- metrics and traces
    METRICS_TOKEN: str | None = observe(
        None,
        'GET /metrics (Prometheus text) answers a scraper that sends "Authorization: Bearer '
        '<this>"; anything else gets 401. Empty: /metrics is off (404). Production refuses a '
        "short or predictable one. Generate it like SECRET_KEY. Scrape each node directly, "
        "not through the load balancer (each node reports its own workers).",
        shown="– (`/metrics` off: 404)",
    )
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: str | None = observe(
        None,
        "OpenTelemetry traces (Flask, SQLAlchemy, httpx; app/tracing.py) over OTLP/HTTP: the "
        "collector's traces URL, or its base URL (/v1/traces is added). Both empty: no tracing "
        "at all. Other OTEL_EXPORTER_OTLP_* variables (headers, timeout, certificates) and "
        "OTEL_TRACES_SAMPLER are read by OpenTelemetry from the process environment.",
    )
    OTEL_EXPORTER_OTLP_ENDPOINT: str | None = observe(None)
    OTEL_SERVICE_NAME: str = observe("prompthub")
    OTEL_SDK_DISABLED: Flag = observe(False, "true turns tracing off even with an endpoint set.")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], **sources: PydanticBaseSettingsSource
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """``Environment`` alone: pydantic-settings' own sources would read names in any case,
        and ``.env`` and the environment each on their own terms."""
        return (Environment(settings_cls),)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from ``env``, or from ``.env`` and the environment (``None``); a value
        that does not parse is a ``ConfigError`` naming every setting at fault."""
        token = _GIVEN.set(env)
        try:
            return cls()
        except ValidationError as exc:
            raise ConfigError("\n".join(explain(error) for error in exc.errors())) from None
        finally:
            _GIVEN.reset(token)


# Read by other programs from the process environment only, never from .env; documented with
# the settings (group, name, default as README says it, description).
PROCESS_ONLY = (
    (
        METRICS,
        "PROMETHEUS_MULTIPROC_DIR",
        "`instance/metrics/<host>-<port>` under gunicorn",
        "Where each gunicorn worker keeps its metric values, added up by /metrics. Read from "
        "the process environment only (by gunicorn.conf.py and prometheus-client, never from "
        ".env); unset, gunicorn.conf.py uses instance/metrics/<host>-<port>. Emptied at start; "
        "one per node.",
    ),
)


def bounds(name: str) -> tuple[float | None, float | None]:
    """A setting's lowest and highest allowed value (``ge``/``le`` of its field), if any."""
    low = high = None
    for item in Settings.model_fields[name].metadata:
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
    return low, high


def out_of_bounds(name: str, value: Any) -> str | None:
    """Why ``value`` is outside the bounds of setting ``name``, or None. Shared by ``load``
    (the environment) and ``app/config.py`` (overrides included), so both say it alike."""
    low, high = bounds(name)
    if low is not None and high is not None and not low <= value <= high:
        return f"{name} must be between {low} and {high}, got {value}"
    if low is not None and value < low:
        return f"{name} must be {low} or more, got {value}"
    if high is not None and value > high:
        return f"{name} must be {high} or less, got {value}"
    return None


def explain(error: Any) -> str:
    """One pydantic error as a sentence naming the setting, what it expects and what it got."""
    name = str(error["loc"][0]) if error["loc"] else "settings"
    value = error.get("input")
    if error["type"] in ("greater_than_equal", "less_than_equal"):
        return out_of_bounds(name, value) or f"{name}: {error['msg']}"
    if error["type"] == "literal_error":
        expected = error["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return f"{name} must be one of {expected}, got {value!r}"
    reason = str(error["msg"]).removeprefix("Value error, ")
    return f"{name} {reason}, got {value!r}"
