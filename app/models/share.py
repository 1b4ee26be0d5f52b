"""Share links: a project's public chat page (``/s/<token>``), off until its owner makes one.

``token`` is the link's secret (128 random bits, ``secrets.token_urlsafe(16)``): whoever has
the URL may chat, unless the link has a passcode (``passcode_hash``, bcrypt like passwords).
``revoked_at`` and ``expires_at`` refuse the link from the next request on, on every node
(every request reads the row). ``allowed_origins``: the https origins allowed to frame the page
(space-separated; the page's ``frame-ancestors``). ``monthly_tokens``: a total budget of tokens
(in + out) the link's visitors may spend per calendar month (UTC); None: none of its own (the
owner's spending budgets apply either way).

A visitor's conversations are ordinary conversations of the project with ``source = 'share'``,
``share_link_id`` and ``visitor`` (the random id in the visitor's signed cookie), so the owner
reads them and their metrics like any other."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, CreatedAtMixin, UTCDateTime
from app.models.project import Project


class ShareLink(CreatedAtMixin, Base):
    __tablename__ = "share_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True, nullable=False
    )
    token: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    passcode_hash: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    allowed_origins: Mapped[str | None] = mapped_column(Text)
    monthly_tokens: Mapped[int | None] = mapped_column(Integer)

    project: Mapped[Project] = relationship(lazy="joined")

    @property
    def origins(self) -> list[str]:
        return (self.allowed_origins or "").split()
