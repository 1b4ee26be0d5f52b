"""Rate limits (Flask-Limiter): brute force on login and register, chat and uploads per user.

Counts live in ``RATELIMIT_STORAGE_URI``: ``memory://`` (one process) by default, Redis in
production so every worker and machine shares them. Limits are read from the config on each
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

from flask import Flask, current_app, g
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import current_user

from app.identity import canonical_email_or_none

limiter = Limiter(key_func=get_remote_address)


def init_app(app: Flask) -> None:
    # Flask-Limiter keeps the key prefix of the first app it was initialised with
    # (``self._key_prefix or config[...]``); every app (the tests build one per test) must count
    # under its own RATELIMIT_KEY_PREFIX, or counts leak between apps sharing one Redis.
    limiter._key_prefix = app.config.get("RATELIMIT_KEY_PREFIX", "")
    limiter.init_app(app)


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
upload_per_user = limiter.limit(
    _config("RATELIMIT_UPLOAD"), methods=["POST"], key_func=user_or_address, scope="upload"
)
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
