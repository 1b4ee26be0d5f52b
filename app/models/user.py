"""Accounts. Emails are stored in one canonical form (``app.identity.canonical_email``: NFKC,
trimmed, IDNA domain, lower-case), so the unique constraint ignores case and spelling.
``token_version`` is bumped by "log out everywhere": it is part of every JWT, so bumping it
revokes them (the same action deletes every login session, see ``models/session.py``)."""

from __future__ import annotations

from flask_login import UserMixin
from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin


class User(CreatedAtMixin, UserMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, nullable=False)
    name: Mapped[str | None] = mapped_column(String(80))
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    token_version: Mapped[int] = mapped_column(Integer, default=0, nullable=False)

    # The login session this user was loaded through (``auth.services``); not a column.
    session_id = None

    def get_id(self) -> str:
        # Flask-Login stores this in the signed session cookie: the random id of this login's
        # ``user_sessions`` row, so "Log out" can end exactly this session on the server.
        if self.session_id is None:
            raise RuntimeError("log in through auth.services.start_session")
        return self.session_id

    @property
    def display_name(self) -> str:
        return self.name or self.email.split("@", 1)[0]
