"""Passwords and bearer tokens.

Passwords: bcrypt through passlib's ``CryptContext`` (provided by ``libpass``, the maintained
fork; passlib 1.7.4 breaks on bcrypt 5). bcrypt refuses secrets over 72 bytes, and WTForms
counts characters, so ``password_problem`` checks UTF-8 bytes and callers turn that into a form
error instead of a 500. ``verify_password`` does exactly one bcrypt check for every input
(unknown account, over-long password and all), so login time reveals nothing.

Tokens: HS256 JWTs signed with ``JWT_SECRET`` (``SECRET_KEY`` when it is not set) carrying the
user id (``sub``) and the user's ``token_version`` (``ver``, required: a token without it is
invalid, never read as version 0). Bumping the version revokes every
token issued before; rotating ``JWT_SECRET`` revokes every token of every user, and leaves the
browser sessions (signed with ``SECRET_KEY``) alone.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from functools import cache

import jwt
from flask import current_app
from passlib.context import CryptContext

from app.models.base import db_int

PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_BYTES = 72
JWT_ALGORITHM = "HS256"

pwd_context = CryptContext(schemes=["bcrypt"], deprecated="auto", bcrypt__rounds=12)


@cache
def _context(rounds: int) -> CryptContext:
    """A context hashing at ``rounds`` (config ``BCRYPT_ROUNDS``; tests use a low cost)."""
    return CryptContext(schemes=["bcrypt"], deprecated="auto", bcrypt__rounds=rounds)


def password_problem(password: str) -> str | None:
    """Why this password cannot be used, or None when it can."""
    if len(password) < PASSWORD_MIN_CHARS:
        return f"Use at least {PASSWORD_MIN_CHARS} characters."
    if len(password.encode("utf-8")) > PASSWORD_MAX_BYTES:
        return (
            f"Use at most {PASSWORD_MAX_BYTES} bytes "
            "(letters outside ASCII take 2 to 4 bytes each)."
        )
    return None


_gevent_pool = None


def off_the_event_loop(fn, *args):
    """Run CPU-heavy ``fn`` (bcrypt: ~250 ms at cost 12) where it does not stall other requests.

    Under gevent workers every request of a process shares one OS thread, so a bcrypt call
    would freeze all of that worker's open chat streams; there it runs on one real thread of its
    own (bcrypt releases the GIL), one hash at a time per worker, so a burst of logins queues
    instead of taking every core from the streams. Anywhere else it simply runs here."""
    global _gevent_pool
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        return fn(*args)
    if _gevent_pool is None:
        from gevent.threadpool import ThreadPool

        _gevent_pool = ThreadPool(maxsize=1)
    return _gevent_pool.apply(fn, args)


def hash_password(password: str) -> str:
    return off_the_event_loop(_context(current_app.config["BCRYPT_ROUNDS"]).hash, password)


# A well-formed bcrypt hash (salt and checksum) that no password matches, at any cost: the cost
# field is rewritten to the configured one, so checking against it costs what a real check costs,
# without computing a hash first.
_DUMMY_HASH_TAIL = "k1tr3EtSgwrur7igTPyt4.eespD.doURJf7SKTcHsNeTCDRRoygJi"


def _dummy_hash(rounds: int) -> str:
    return f"$2b${rounds:02d}${_DUMMY_HASH_TAIL}"


def verify_password(password: str, password_hash: str | None) -> bool:
    """Whether ``password`` matches ``password_hash`` (None: there is no such account).

    Every call does exactly one bcrypt check, so the answer's timing reveals nothing: an
    unknown account, or a password bcrypt could never have hashed (over 72 bytes), is checked
    against a dummy hash at the configured cost and answers False."""
    secret = password.encode("utf-8")
    usable = password_hash is not None and len(secret) <= PASSWORD_MAX_BYTES
    target = password_hash if usable else _dummy_hash(current_app.config["BCRYPT_ROUNDS"])
    matched = off_the_event_loop(pwd_context.verify, secret[:PASSWORD_MAX_BYTES], target)
    return usable and matched


class TokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def signing_key() -> str:
    """The key API tokens are signed and verified with: ``JWT_SECRET``, else ``SECRET_KEY``."""
    config = current_app.config
    return config.get("JWT_SECRET") or config["SECRET_KEY"]


def issue_token(user_id: int, token_version: int, *, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    days = current_app.config["JWT_EXPIRES_DAYS"]
    claims = {
        "sub": str(user_id),
        "ver": token_version,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(days=days)).timestamp()),
    }
    return jwt.encode(claims, signing_key(), algorithm=JWT_ALGORITHM)


def decode_token(token: str) -> tuple[int, int]:
    """Return ``(user_id, token_version)`` or raise ``TokenError``."""
    try:
        claims = jwt.decode(
            token,
            signing_key(),
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "ver", "exp", "iat"]},
        )
        # A user id must fit the id column: a larger one names no user and would overflow
        # inside the query (a 500), even in a token we signed ourselves.
        user_id = db_int(claims["sub"]) if isinstance(claims["sub"], str) else None
        if user_id is None:
            raise ValueError("sub is not a user id")
        # Every token we issue names the version it was issued at; one without it (or with
        # anything but a whole number) is not ours to read as version 0.
        version = claims["ver"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError("ver is not a token version")
        return user_id, version
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token_expired", "The token has expired; log in again.") from exc
    except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
        raise TokenError("token_invalid", "The token is not valid.") from exc
