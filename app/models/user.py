"""Accounts. Emails are stored in one canonical form (``app.identity.canonical_email``: NFKC,
trimmed, IDNA domain, lower-case), so the unique constraint ignores case and spelling.
``token_version`` is bumped by "log out everywhere": it is part of every JWT and of the session
id, so bumping it revokes both."""

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

    def get_id(self) -> str:
        # Flask-Login stores this in the session; the version makes old sessions invalid
        # once the user logs out everywhere.
        return f"{self.id}:{self.token_version}"

    @property
    def display_name(self) -> str:
        return self.name or self.email.split("@", 1)[0]
