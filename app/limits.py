"""Rate limits (Flask-Limiter): brute force on login and register, chat and uploads per user.

Counts live in ``RATELIMIT_STORAGE_URI``: ``memory://`` (one process) by default, Redis in
production so every worker and machine shares them. Limits are read from the config on each
request (``RATELIMIT_LOGIN`` …), so they can be tuned without code. A breach is a 429 with
``Retry-After``: JSON ``{"error": {"code": "rate_limited"}}`` on ``/api/``, a page elsewhere.

Login is limited twice: per client address (many accounts from one place) and per submitted
email (one account from many places), so neither spraying nor a botnet gets unlimited guesses.
"""

from __future__ import annotations

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import current_user

limiter = Limiter(key_func=get_remote_address)


def init_app(app: Flask) -> None:
    # Flask-Limiter keeps the key prefix of the first app it was initialised with
    # (``self._key_prefix or config[...]``); every app (the tests build one per test) must count
    # under its own RATELIMIT_KEY_PREFIX, or counts leak between apps sharing one Redis.
    limiter._key_prefix = app.config.get("RATELIMIT_KEY_PREFIX", "")
    limiter.init_app(app)


def _config(key: str):
    return lambda: current_app.config[key]


def submitted_email() -> str:
    """The account a login is aimed at, from the form or the JSON body."""
    data = request.get_json(silent=True) if request.is_json else request.form
    email = data.get("email") if isinstance(data, dict) or hasattr(data, "get") else None
    return "account:" + (email.strip().lower() if isinstance(email, str) else "")


def user_or_address() -> str:
    if current_user.is_authenticated:
        return "user:" + str(current_user.id)
    return "addr:" + get_remote_address()


login_per_address = limiter.limit(
    _config("RATELIMIT_LOGIN"), methods=["POST"], scope="login-address"
)
login_per_account = limiter.limit(
    _config("RATELIMIT_LOGIN_ACCOUNT"),
    methods=["POST"],
    key_func=submitted_email,
    scope="login-account",
)
register_per_address = limiter.limit(
    _config("RATELIMIT_REGISTER"), methods=["POST"], scope="register"
)
chat_per_user = limiter.limit(_config("RATELIMIT_CHAT"), key_func=user_or_address, scope="chat")
upload_per_user = limiter.limit(
    _config("RATELIMIT_UPLOAD"), methods=["POST"], key_func=user_or_address, scope="upload"
)
