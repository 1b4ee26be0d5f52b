"""Account rules shared by the HTML and JSON routes. No request, flash or templates here."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from app.auth.token_cache import TokenUsers
from app.errors import Conflict, Unauthorized, ValidationFailed
from app.extensions import db
from app.identity import canonical_email
from app.models import User, UserSession
from app.models.base import utcnow
from app.security import (
    TokenError,
    decode_token,
    hash_password,
    issue_token,
    password_problem,
    verify_password,
)

log = logging.getLogger(__name__)
NAME_MAX = 80
BAD_CREDENTIALS = "Invalid email or password."
# A session's last_seen_at and sliding expiry are written at most this often (not every request).
SESSION_TOUCH_EVERY = timedelta(minutes=5)


def register_user(*, email: str | None, password: str | None, name: str | None = None) -> User:
    fields: dict[str, str] = {}
    try:
        email = canonical_email(email)  # stored in this form: one spelling per account
    except ValidationFailed as exc:
        fields.update(exc.fields or {})
    problem = password_problem(password or "")
    if problem:
        fields["password"] = problem
    name = (name or "").strip() or None
    if name and len(name) > NAME_MAX:
        fields["name"] = f"Use at most {NAME_MAX} characters."
    if fields:
        raise ValidationFailed(fields=fields)

    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(
            "An account with this email already exists.",
            fields={"email": "An account with this email already exists."},
            code="email_taken",
        )
    user = User(email=email, name=name, password_hash=hash_password(password))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError as exc:  # two registrations raced past the check above
        db.session.rollback()
        raise Conflict(
            "An account with this email already exists.",
            fields={"email": "An account with this email already exists."},
            code="email_taken",
        ) from exc
    log.info("user registered id=%s", user.id)
    return user


def authenticate(*, email: str | None, password: str | None) -> User:
    """The user with these credentials. Same error, same bcrypt work, whatever was wrong: an
    unknown email, a malformed one, a wrong password, or one too long for bcrypt."""
    try:
        email = canonical_email(email)
    except ValidationFailed:
        email = None  # names no account; still checked below, against the dummy hash
    user = db.session.scalar(select(User).where(User.email == email)) if email else None
    matched = verify_password(password or "", user.password_hash if user else None)
    if user is None or not matched:
        raise Unauthorized(BAD_CREDENTIALS, code="invalid_credentials")
    return user


def token_for(user: User) -> str:
    return issue_token(user.id, user.token_version)


def revoke_all_sessions(*, user: User) -> None:
    """Log out everywhere: every token issued before now stops working, every session ends."""
    version = db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(token_version=User.token_version + 1)
        .returning(User.token_version)
    ).scalar_one()
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    db.session.commit()
    token_users().revoke(user.id)  # this machine's processes refuse the old tokens at once
    # ``user`` may be detached (a token's cached user): give it the new version directly.
    set_committed_value(user, "token_version", version)


def _session_key(session_id: str) -> str:
    """The stored form of a session id: its SHA-256, so the table holds no usable session id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _session_lifetime() -> timedelta:
    return current_app.config["PERMANENT_SESSION_LIFETIME"]


def start_session(*, user: User) -> str:
    """A new login session for ``user`` (also set as ``user.session_id``); its id goes into the
    cookie. The user's expired sessions are deleted on the way, so rows do not pile up."""
    now = utcnow()
    session_id = secrets.token_urlsafe(32)
    db.session.execute(
        delete(UserSession).where(UserSession.user_id == user.id, UserSession.expires_at <= now)
    )
    db.session.add(
        UserSession(
            id=_session_key(session_id),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + _session_lifetime(),
        )
    )
    db.session.commit()
    user.session_id = session_id
    return session_id


def end_session(*, user: User) -> None:
    """Log out: the session ``user`` was loaded through ends; a copy of its cookie is dead."""
    if user.session_id is None:
        return
    db.session.execute(delete(UserSession).where(UserSession.id == _session_key(user.session_id)))
    db.session.commit()


def user_for_session_id(session_id: str) -> User | None:
    """The user of a live login session, in one indexed query (user joined to the session's
    primary key); None when the session ended or expired. Use slides the expiry forward, written
    at most every ``SESSION_TOUCH_EVERY``."""
    if not session_id or len(session_id) > 100:
        return None
    key, now = _session_key(session_id), utcnow()
    row = db.session.execute(
        select(User, UserSession.last_seen_at)
        .join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.id == key, UserSession.expires_at > now)
    ).first()
    if row is None:
        return None
    user, last_seen = row
    if now - last_seen >= SESSION_TOUCH_EVERY:
        db.session.execute(
            update(UserSession)
            .where(UserSession.id == key)
            .values(last_seen_at=now, expires_at=now + _session_lifetime())
        )
        db.session.commit()
    user.session_id = session_id
    return user


def token_users() -> TokenUsers:
    return current_app.extensions["token_users"]


def user_for_token(token: str) -> User:
    """The user a bearer token names, while the token is current (``token_cache``: no query
    while this process holds the user's current row)."""
    user_id, version = decode_token(token)
    cache = token_users()
    user, generation = cache.lookup(user_id, version)
    if user is not None:
        return user
    user = db.session.get(User, user_id)
    if user is None:
        raise TokenError("token_invalid", "The token is not valid.")
    if user.token_version != version:
        raise TokenError("token_revoked", "The token was revoked; log in again.")
    cache.put(user, generation)
    return user


def init_app(app) -> None:
    app.extensions["token_users"] = TokenUsers(
        app.config["AUTH_CACHE_SECONDS"],
        app.config["AUTH_REVOCATION_LOG"],
        redis_url=app.config.get("REDIS_URL"),
        channel=f"{app.config['REDIS_KEY_PREFIX']}auth-revoked",
    )
