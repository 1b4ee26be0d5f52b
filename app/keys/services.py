"""API key rules: create (the key shown once), list, revoke, and check a key on each request.

A key is checked against its row on every request (one indexed read by prefix, then a
constant-time comparison of SHA-256 digests): a revoked or expired key is refused by the next
request on every node, with no cache to wait out. The last use (time and client address) is
written at most once a minute per key, so a busy key does not write on every call.

Scopes (``models.key``): a key with ``chat`` works on the OpenAI-compatible endpoints only; with
``read`` also on the JSON API's reads; with ``manage`` on the whole JSON API but the account's
credentials (keys, logging out everywhere). A project key works on the OpenAI-compatible
endpoints only, for its project. ``check_scope`` applies this to each request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, request
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import make_transient_to_detached, selectinload

from app.errors import Forbidden, NotFound, ValidationFailed
from app.extensions import db
from app.models import ApiKey, Project, Scope, User
from app.models.base import utcnow
from app.projects.services import get_project_for
from app.security import TokenError

KEY_START = "phk_"
PREFIX_CHARS = 8
NAME_MAX = 80
LAST_USED_EVERY = timedelta(minutes=1)
_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/l/I


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def is_key(token: str) -> bool:
    return token.startswith(KEY_START)


def _new_key() -> tuple[str, str]:
    """(the key, its prefix): ``phk_<8 characters>_<43 characters, 256 random bits>``."""
    public = "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_CHARS))
    prefix = f"{KEY_START}{public}"
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


# --- managing keys ---------------------------------------------------------------------------


def create_key(
    *,
    user: User,
    name: str | None,
    scope: str | None = None,
    project_id: int | None = None,
    expires_in_days: int | None = None,
    rate_per_minute: int | None = None,
    monthly_tokens: int | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret text (shown once: only its digest is stored)."""
    fields: dict[str, str] = {}
    name = (name or "").strip()
    if not name:
        fields["name"] = "Name the key (what uses it)."
    elif len(name) > NAME_MAX:
        fields["name"] = f"Use at most {NAME_MAX} characters."
    scope = scope or Scope.CHAT
    if scope not in set(Scope):
        fields["scope"] = "Choose chat, read or manage."
    project = get_project_for(user, project_id) if project_id is not None else None
    if project is not None and scope != Scope.CHAT:
        fields["scope"] = "A project key can only chat (the OpenAI-compatible endpoints)."
    if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
        fields["expires_in_days"] = "Between 1 and 3650 days, or none."
    top = current_app.config["API_KEY_RATE_MAX"]
    if rate_per_minute is not None and not 1 <= rate_per_minute <= top:
        fields["rate_per_minute"] = f"Between 1 and {top} calls a minute, or none."
    if monthly_tokens is not None and not 1 <= monthly_tokens <= 2_000_000_000:
        fields["monthly_tokens"] = "A positive number of tokens, or none."
    if fields:
        raise ValidationFailed(fields=fields)
    active = db.session.scalar(
        select(func.count()).where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
    )
    most = current_app.config["API_KEYS_MAX"]
    if active >= most:
        raise ValidationFailed(
            f"You have {most} active keys, the most allowed. Revoke one first.",
            code="too_many_keys",
        )
    secret, prefix = _new_key()
    key = ApiKey(
        user_id=user.id,
        project_id=project.id if project else None,
        name=name,
        prefix=prefix,
        digest=digest(secret),
        scope=scope,
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
        rate_per_minute=rate_per_minute,
        monthly_tokens=monthly_tokens,
    )
    db.session.add(key)
    db.session.commit()
    return key, secret


def list_keys(user: User) -> list[ApiKey]:
    """The user's keys, newest first, revoked ones included (their history stays readable)."""
    return list(
        db.session.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == user.id)
            .options(selectinload(ApiKey.project))
            .order_by(ApiKey.id.desc())
        )
    )


def get_key_for(user: User, key_id: int) -> ApiKey:
    key = db.session.get(ApiKey, key_id)
    if key is None or key.user_id != user.id:
        raise NotFound("No such API key.")
    return key


def revoke_key(*, user: User, key_id: int) -> ApiKey:
    """Refuse the key from its next request on (every node reads the row). Revoking twice is
    the same as once."""
    key = get_key_for(user, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        db.session.commit()
    return key


# --- checking a key on a request ----------------------------------------------------------------


@dataclass(frozen=True)
class KeyInUse:
    """The key of the request (``g.api_key``): what the checks after authentication read."""

    id: int
    project_id: int | None
    scope: str
    rate_per_minute: int | None
    monthly_tokens: int | None
    digest: str
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None


_KEY_COLUMNS = tuple(
    getattr(ApiKey, name).label(f"key_{name}") for name in KeyInUse.__dataclass_fields__
)
_USER_COLUMNS = tuple(User.__table__.columns)
# The key and its user in one statement of plain columns, built once: a detached ``User`` is
# made from them as the token cache makes one (``auth.token_cache``), without the ORM's loading.
_KEY_AND_USER = (
    select(*_KEY_COLUMNS, *_USER_COLUMNS)
    .join(User, User.id == ApiKey.user_id)
    .where(ApiKey.prefix == bindparam("prefix"))
)


def key_for(token: str) -> tuple[KeyInUse, User]:
    """The key ``token`` is and its user, while it may be used (one statement): ``TokenError``
    otherwise (401)."""
    cut = len(KEY_START) + PREFIX_CHARS
    prefix, secret = token[:cut], token[cut + 1 :]  # the secret may hold "_" itself
    key = user = None
    if token[cut : cut + 1] == "_" and secret:
        row = db.session.execute(_KEY_AND_USER, {"prefix": prefix}).first()
        if row is not None:
            values = row._mapping
            key = KeyInUse(**{n: values[f"key_{n}"] for n in KeyInUse.__dataclass_fields__})
            user = User(**{column.key: values[column] for column in _USER_COLUMNS})
            make_transient_to_detached(user)
    if key is None or not hmac.compare_digest(key.digest, digest(token)):
        raise TokenError("key_invalid", "The API key is not valid.")
    if key.revoked_at is not None:
        raise TokenError("key_revoked", "The API key was revoked.")
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise TokenError("key_expired", "The API key has expired.")
    _note_use(key)
    return key, user


def _note_use(key: KeyInUse) -> None:
    """Write the key's last use, at most once a minute (the UPDATE's condition makes the
    check and the write one statement, so concurrent requests write once)."""
    now = utcnow()
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_EVERY:
        return
    address = (request.remote_addr or "")[:64] or None
    db.session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key.id,
            (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < now - LAST_USED_EVERY),
        )
        .values(last_used_at=now, last_used_ip=address)
    )
    db.session.commit()


OPENAI_PREFIX = "/v1/"
# JSON API routes a ``read`` or ``manage`` key may never use: the account's credentials.
ACCOUNT_ENDPOINTS = {"api.auth.logout_all", "api.keys.create", "api.keys.revoke"}


def check_scope(key: KeyInUse, path: str, endpoint: str | None, method: str) -> None:
    """Refuse (403 ``insufficient_scope``) a request the key's scope does not cover."""
    if path.startswith(OPENAI_PREFIX):
        return
    if key.project_id is not None or key.scope == Scope.CHAT:
        raise Forbidden(
            "This API key can only be used on the OpenAI-compatible endpoints (/v1).",
            code="insufficient_scope",
        )
    if endpoint in ACCOUNT_ENDPOINTS:
        raise Forbidden(
            "API keys cannot manage the account's credentials; log in instead.",
            code="insufficient_scope",
        )
    if key.scope == Scope.READ and method not in {"GET", "HEAD", "OPTIONS"}:
        raise Forbidden("This API key can only read.", code="insufficient_scope")


def projects_for(user: User, key: KeyInUse | None) -> list[Project]:
    """The projects a caller may use as models: a project key's own, else all of the user's."""
    stmt = select(Project).where(Project.owner_id == user.id).order_by(Project.id)
    if key is not None and key.project_id is not None:
        stmt = stmt.where(Project.id == key.project_id)
    return list(db.session.scalars(stmt))
