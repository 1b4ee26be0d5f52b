"""Login sessions, one row per browser login, so "Log out" ends that session on the server.

The Flask-Login session id in the signed cookie is a random token; the row's primary key is its
SHA-256, so a copy of the table holds no usable session id. A cookie whose row is gone (logged
out, logged out everywhere, expired) is logged out. ``expires_at`` slides with use, like the
permanent cookie does (see ``auth.services.user_for_session_id``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, UTCDateTime, utcnow


class UserSession(CreatedAtMixin, Base):
    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False
    )
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
