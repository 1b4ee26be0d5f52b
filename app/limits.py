"""Rate limits (Flask-Limiter): brute force on login and register, chat and uploads per user.

Uploads are counted per file, not per request, in one budget for every upload route (below).

Counts live in ``RATELIMIT_STORAGE_URI``: ``memory://`` (one process) by default, Redis in
production so every worker and machine shares them. Redis is never a single point of failure:
when it cannot be reached, each process counts in its own memory (Flask-Limiter's in-memory
fallback, with the same limits; a limit of 10 allows up to 10 per process while it lasts) and
serves on. The switch is logged once (``flask-limiter``: "Rate limit storage unreachable"), and
so is the recovery ("Rate limit storage recovered"; Flask-Limiter tries Redis again after 1, 2,
4 … 32 s). ``/readyz`` reports the store as ``ratelimit``. Refusing every request while Redis is
out (a 503) would turn a cache outage into a full one; per-process counts still bound each
client, only less tightly. Limits are read from the config on each
request (``RATELIMIT_LOGIN`` …), so they can be tuned without code. A breach is a 429 with
``Retry-After``: JSON ``{"error": {"code": "rate_limited"}}`` on ``/api/``, a page elsewhere.

Login is limited twice: per client address (many accounts from one place) and per target
account (one account from many places), so neither spraying nor a botnet gets unlimited guesses.
The account is ``identity.canonical_email`` of the submitted email, the same form login looks
up, so no other spelling of an address gets a fresh count.

Key functions never read the request body: a key is computed before the view has checked the
body's size and type. The per-account limit therefore runs inside the login views, after they
parsed the body (``count_login_attempt``): Flask-Limiter rate-limits a plain decorated function
when it is called within a request, with the same storage, prefix, 429 and headers as a route.
"""

from __future__ import annotations

import math
import time

from flask import Flask, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import current_user

from app import observability
from app.identity import canonical_email_or_none

limiter = Limiter(key_func=get_remote_address)


def init_app(app: Flask) -> None:
    # Flask-Limiter keeps the key prefix of the first app it was initialised with
    # (``self._key_prefix or config[...]``); every app (the tests build one per test) must count
    # under its own RATELIMIT_KEY_PREFIX, or counts leak between apps sharing one Redis.
    limiter._key_prefix = app.config.get("RATELIMIT_KEY_PREFIX", "")
    # A new app (the tests build one per test) starts on its own storage, not in an outage an
    # earlier app's storage had.
    limiter._storage_dead = False
    app.config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] = True
    # The switch is not atomic: a request whose storage call fails just after another request
    # switched would otherwise raise (a 500). Swallowed instead: that request is served
    # uncounted and logged ("Swallowing error"); only requests racing the first failure are.
    app.config["RATELIMIT_SWALLOW_ERRORS"] = True
    uri = app.config.get("RATELIMIT_STORAGE_URI", "memory://")
    shared = not uri.startswith("memory://")
    if shared and uri.startswith(("redis", "valkey")):
        # A Redis that stopped answering (not refusing) must cost a request a second or two,
        # not redis-py's default three retries with backoff: one retry at once (it replaces a
        # pooled connection the server closed, as after a Redis restart), then the fallback.
        app.config.setdefault(
            "RATELIMIT_STORAGE_OPTIONS",
            {"socket_connect_timeout": 1, "socket_timeout": 1, "retry": _one_retry()},
        )
    limiter.init_app(app)
    if shared:
        observability.register_check(app, "ratelimit", _storage_check)


def _one_retry():
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 1)


def _storage_check() -> str:
    """For ``/readyz``: the shared count store answers, or each process counts on its own."""
    return "ok" if limiter.storage.check() else "unavailable (counting per process)"


def _config(key: str):
    return lambda: current_app.config[key]


def user_or_address() -> str:
    if current_user.is_authenticated:
        return "user:" + str(current_user.id)
    return "addr:" + get_remote_address()


login_per_address = limiter.limit(
    _config("RATELIMIT_LOGIN"), methods=["POST"], scope="login-address"
)


def _login_account() -> str:
    return "account:" + g.login_account


@limiter.limit(_config("RATELIMIT_LOGIN_ACCOUNT"), key_func=_login_account, scope="login-account")
def _count_login_account() -> None:
    """Counted by the decorator each time it is called (see ``count_login_attempt``)."""


def count_login_attempt(email: str | None) -> None:
    """Count one login attempt against the account ``email`` names; 429 when over the limit.

    Call it from the login views after parsing the body and before checking the password. An
    email that is not an address names no account: nothing to count (the per-address limit
    still counts the request)."""
    account = canonical_email_or_none(email)
    if account is None:
        return
    g.login_account = account  # read by the key function, in this request only
    _count_login_account()


# One count per address for the page and the API together (a shared limit): registering answers
# whether an email has an account (409), so this is also the bound on probing for accounts.
register_per_address = limiter.shared_limit(
    _config("RATELIMIT_REGISTER"), scope="register", methods=["POST"]
)
chat_per_user = limiter.limit(_config("RATELIMIT_CHAT"), key_func=user_or_address, scope="chat")
# A comparison is two provider calls (one per side): it costs two hits of RATELIMIT_CHAT, on its
# own route's count like every chat route (Flask-Limiter counts each route on its own).
compare_per_user = limiter.limit(
    _config("RATELIMIT_CHAT"), key_func=user_or_address, scope="chat", cost=2
)
# Attaching to a turn's events (a resumed connection, a Compare column): counted per user so
# opening and dropping readers in a loop is bounded too (open ones are capped in chat/readers).
turn_events_per_user = limiter.limit(
    _config("RATELIMIT_TURN_EVENTS"), key_func=user_or_address, scope="turn-events"
)

# A conversation's title and template variables (``PATCH /api/conversations/<id>``).
conversation_edits_per_user = limiter.limit(
    _config("RATELIMIT_CONVERSATION_EDITS"), key_func=user_or_address, scope="conversation-edits"
)

# Prompt labels (create, move, delete), page and API in one budget per user.
labels_per_user = limiter.shared_limit(
    _config("RATELIMIT_LABELS"), scope="labels", key_func=user_or_address
)


# Uploads are counted in files, not requests: RATELIMIT_UPLOAD is files per user, in one budget
# shared by every route that takes a file in (a shared limit: the page form, the API, OpenAI
# copy retries), so a form of 320 files costs 320, not one request.
def _upload_limit(**kwargs):
    return limiter.shared_limit(
        _config("RATELIMIT_UPLOAD"),
        scope="upload",
        key_func=user_or_address,
        methods=["POST"],
        error_message=lambda: f"{current_app.config['RATELIMIT_UPLOAD']}, counted per file",
        **kwargs,
    )


# A route that takes one file per request (the API upload, a copy to OpenAI): one file counted
# before the body is read.
upload_per_user = _upload_limit()
# The page form, several files per request: a 429 before any file is looked at when not one
# more fits (tested, not counted: ``deduct_when`` never deducts); then each file is counted by
# ``count_uploaded_file`` as the view comes to it.
upload_room_per_user = _upload_limit(deduct_when=lambda _response: False)


@_upload_limit()
def count_uploaded_file() -> None:
    """Count one file against RATELIMIT_UPLOAD; ``RateLimitExceeded`` (429) when over."""


def upload_retry_seconds() -> int:
    """After ``count_uploaded_file`` refused: seconds until the limit lets a file through."""
    current = limiter.current_limit
    return max(1, math.ceil(current.reset_at - time.time())) if current else 60


# API keys (create, revoke), page and API in one budget per user.
keys_per_user = limiter.shared_limit(
    _config("RATELIMIT_KEYS"), scope="keys", key_func=user_or_address, methods=["POST", "DELETE"]
)


def _api_key_id() -> str:
    return "key:" + str(g.api_key.id) if g.get("api_key") is not None else user_or_address()


def _api_key_rate() -> str:
    key = g.get("api_key")
    per_minute = key.rate_per_minute if key is not None and key.rate_per_minute else None
    return f"{per_minute or current_app.config['API_KEY_RATE_PER_MINUTE']} per minute"


@limiter.limit(_config("RATELIMIT_OPENAI_USER"), key_func=user_or_address, scope="openai-user")
def count_openai_call() -> None:
    """One call to the OpenAI-compatible endpoints, counted against the user's rate over all
    keys (429 ``rate_limited`` with ``Retry-After`` when over)."""


@limiter.limit(_api_key_rate, key_func=_api_key_id, scope="openai-key")
def count_openai_key_call() -> None:
    """The same call counted against the calling key's own rate (``API_KEY_RATE_PER_MINUTE``
    or the key's ``rate_per_minute``)."""


# Share links (``app/share``): a visitor's message counts against the visitor on that link and
# against the link over all its visitors. The view sets who is counted (``count_share_turn``):
# the visitor's id comes from their signed cookie, which a key function should not decode.
def _share_visitor() -> str:
    return "share-visitor:" + g.share_visitor


def _share_link() -> str:
    return "share-link:" + str(g.share_link)


@limiter.limit(_config("RATELIMIT_SHARE_VISITOR"), key_func=_share_visitor, scope="share-visitor")
def _count_share_visitor() -> None:
    """Counted by the decorator each time it is called (see ``count_share_turn``)."""


@limiter.limit(_config("RATELIMIT_SHARE_LINK"), key_func=_share_link, scope="share-link")
def _count_share_link() -> None:
    """Counted by the decorator each time it is called (see ``count_share_turn``)."""


def count_share_turn(link_id: int, visitor: str | None) -> None:
    """Count one visitor's message on a share link: per visitor first (a flooding visitor is
    refused before using up the link's count), then per link; 429 when over either.
    ``visitor`` None (no cookie yet): counted by client address."""
    g.share_link = link_id
    g.share_visitor = f"{link_id}:{visitor or 'addr:' + get_remote_address()}"
    _count_share_visitor()
    _count_share_link()


# Passcode attempts on a share link, per client address and link.
share_unlock_per_address = limiter.limit(
    _config("RATELIMIT_SHARE_UNLOCK"),
    key_func=lambda: f"{get_remote_address()}:{request.view_args.get('token', '')}",
    scope="share-unlock",
    methods=["POST"],
)

# Share links (create, revoke), page and API in one budget per user.
share_links_per_user = limiter.shared_limit(
    _config("RATELIMIT_SHARE_LINKS"),
    scope="share-links",
    key_func=user_or_address,
    methods=["POST", "DELETE"],
)
