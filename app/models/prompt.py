"""Prompt versions: immutable rows numbered 1, 2, 3 … per project.

Which version is active is one pointer on the project (``projects.active_prompt_id``), so
"exactly one active version" holds by construction, also under concurrent requests. A composite
foreign key ``(projects.id, active_prompt_id) → (prompt_versions.project_id, id)`` makes the
pointer unable to name another project's version; the candidate pointer
(``candidate_prompt_id``) is built the same way.

A version is a whole configuration: the text plus the model (a name from the ``MODELS``
allowlist), the temperature (None: the provider's default) and the output-token budget. They
version together, so changing only the model is a new version.

Template variables (``app/templating.py``, docs/templates.md): ``variables`` declares them
(name, type, default, description, required; a list, empty for text without any), and
``templated`` says whether the text is rendered at all. It is set at save for text with
template syntax, which was parsed then; versions saved before templates (migration 0014) keep
``templated`` false and are sent as they are, whatever braces they hold.

``UNIQUE(project_id, version)`` keeps numbers from repeating; the service retries on conflict.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, CreatedAtMixin, UTCDateTime, utcnow

if TYPE_CHECKING:
    from app.models.project import Project


class PromptVersion(CreatedAtMixin, Base):
    __tablename__ = "prompt_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "version", name="uq_prompt_versions_project_version"),
        # Target of the project's composite pointer (id alone is unique already).
        UniqueConstraint("project_id", "id", name="uq_prompt_versions_project_id_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    note: Mapped[str | None] = mapped_column(String(200))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    model: Mapped[str] = mapped_column(String(120), nullable=False, server_default="gpt-4o-mini")
    temperature: Mapped[float | None] = mapped_column(Float)
    max_output_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1024")
    variables: Mapped[list] = mapped_column(
        JSON, nullable=False, default=list, server_default=text("'[]'")
    )
    templated: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    # The reply's format (app/formats.py): ``text``, ``json_object`` or ``json_schema`` (then
    # ``output_schema`` holds the JSON Schema replies must match, strictly).
    output_format: Mapped[str] = mapped_column(String(16), nullable=False, server_default="text")
    output_schema: Mapped[dict | None] = mapped_column(JSON)

    project: Mapped[Project] = relationship(foreign_keys=[project_id])

    @property
    def is_active(self) -> bool:
        return self.project.active_prompt_id == self.id

    @property
    def is_candidate(self) -> bool:
        return self.project.candidate_prompt_id == self.id

    @property
    def settings(self) -> dict:
        """What versions together with the text, by name (``CONFIGURATION``): the diff
        compares every one of them, and "no changes" too."""
        return {name: getattr(self, name) for name in CONFIGURATION}


# A version's configuration besides its text, each field with the label the diff shows: the
# one list to extend when a version gains a field (the diff page and API iterate over it).
CONFIGURATION: dict[str, str] = {
    "model": "Model",
    "temperature": "Temperature",
    "max_output_tokens": "Max output tokens",
    "variables": "Variables",
    "output_format": "Output format",
    "output_schema": "Output schema",
}


class PromptLabel(CreatedAtMixin, Base):
    """A named pointer at one of the project's versions (``staging``, ``eu`` …), moved by its
    owner; chats, pinned chats and the API may ask for a version by it. ``production`` and
    ``candidate`` are not rows: they are the project's two pointers, and reserved names here.
    The composite foreign key keeps a label on its own project's versions."""

    __tablename__ = "prompt_labels"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_prompt_labels_project_name"),
        ForeignKeyConstraint(
            ["project_id", "version_id"],
            ["prompt_versions.project_id", "prompt_versions.id"],
            name="fk_prompt_labels_version",
            ondelete="CASCADE",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(40), nullable=False)
    version_id: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )

    # Eager: a label is always shown with its version's number.
    version: Mapped[PromptVersion] = relationship(
        foreign_keys=[version_id],
        primaryjoin="PromptLabel.version_id == PromptVersion.id",
        lazy="joined",
        viewonly=True,
    )
