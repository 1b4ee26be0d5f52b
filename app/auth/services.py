"""Account rules shared by the HTML and JSON routes. No request, flash or templates here."""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, Unauthorized, ValidationFailed
from app.extensions import db
from app.identity import canonical_email
from app.models import User
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
    """Log out everywhere: every token and session issued before now stops working."""
    db.session.execute(
        update(User).where(User.id == user.id).values(token_version=User.token_version + 1)
    )
    db.session.commit()
    db.session.refresh(user)


def user_for_session_id(session_id: str) -> User | None:
    try:
        raw_id, raw_version = session_id.split(":", 1)
        user_id, version = int(raw_id), int(raw_version)
    except ValueError:
        return None
    user = db.session.get(User, user_id)
    if user is None or user.token_version != version:
        return None
    return user


def user_for_token(token: str) -> User:
    user_id, version = decode_token(token)
    user = db.session.get(User, user_id)
    if user is None:
        raise TokenError("token_invalid", "The token is not valid.")
    if user.token_version != version:
        raise TokenError("token_revoked", "The token was revoked; log in again.")
    return user
