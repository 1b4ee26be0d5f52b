"""Projects (agents). A project belongs to one user; everything else hangs off a project."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, ForeignKeyConstraint, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, CreatedAtMixin, UTCDateTime, utcnow
from app.models.user import User


class SystemPolicy(StrEnum):
    APPEND = "append"
    REPLACE = "replace"
    REFUSE = "refuse"


class Project(CreatedAtMixin, Base):
    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("owner_id", "slug", name="uq_projects_owner_slug"),
        # The active prompt must be one of this project's own versions (see models/prompt.py).
        # use_alter: projects and prompt_versions reference each other.
        ForeignKeyConstraint(
            ["id", "active_prompt_id"],
            ["prompt_versions.project_id", "prompt_versions.id"],
            name="fk_projects_active_prompt",
            use_alter=True,
        ),
        # The candidate (a version tried before promotion) is one of its own versions too.
        ForeignKeyConstraint(
            ["id", "candidate_prompt_id"],
            ["prompt_versions.project_id", "prompt_versions.id"],
            name="fk_projects_candidate_prompt",
            use_alter=True,
        ),
    )

    # Explicit: being part of the composite foreign key below hides autoincrement otherwise.
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    active_prompt_id: Mapped[int | None] = mapped_column()  # production: what chats get
    candidate_prompt_id: Mapped[int | None] = mapped_column()
    # Share (0-100) of new conversations sent to the candidate while a canary runs.
    canary_percent: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # The project's model name on the OpenAI-compatible endpoints (``GET /v1/models``): unique
    # among its owner's projects, set from the name at creation (``projects.services``).
    slug: Mapped[str] = mapped_column(String(64), nullable=False)
    # What the OpenAI-compatible endpoints do with a caller's own system or developer messages
    # (``SystemPolicy``): ``append`` them after the version's instructions (the default),
    # ``replace`` the instructions, or ``refuse`` the call.
    system_policy: Mapped[str] = mapped_column(
        String(16), nullable=False, server_default="append", default="append"
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )

    owner: Mapped[User] = relationship()
