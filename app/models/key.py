"""API keys: long-lived bearer credentials for apps, beside the 7-day login tokens.

A key is ``phk_<prefix>_<secret>``: the prefix (8 characters, unique) finds the row and is
shown in lists so a person can recognise a key; the secret (256 random bits) is never stored.
The row keeps the SHA-256 of the whole key: the secret is random and long, so no salt or slow
hash is needed to make the stored digest useless to a thief, and checking a key costs one
indexed read, not a bcrypt round (~0.25 s) per request (``app/keys/services.py``).

``scope``: ``chat`` (the OpenAI-compatible endpoints only), ``read`` (chat, and reading the
JSON API), ``manage`` (the whole JSON API but the account: keys, password, sessions). A
*project key* (``project_id`` set) works only on the OpenAI-compatible endpoints, for that
project. ``revoked_at`` refuses the key at its next request on every node: every request reads
the row (no cache)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, CreatedAtMixin, UTCDateTime
from app.models.project import Project


class Scope(StrEnum):
    CHAT = "chat"
    READ = "read"
    MANAGE = "manage"


class ApiKey(CreatedAtMixin, Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False
    )
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), unique=True, nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)  # SHA-256 of the key, hex
    scope: Mapped[str] = mapped_column(String(16), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    # Requests per minute on the OpenAI-compatible endpoints (None: API_KEY_RATE_PER_MINUTE).
    rate_per_minute: Mapped[int | None] = mapped_column(Integer)
    # Tokens (in + out) the key may spend per calendar month (UTC); None: no budget of its own.
    monthly_tokens: Mapped[int | None] = mapped_column(Integer)

    project: Mapped[Project | None] = relationship()  # the keys page loads it (selectinload)
