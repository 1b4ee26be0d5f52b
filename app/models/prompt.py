"""Prompt versions: immutable rows numbered 1, 2, 3 … per project.

Which version is active is one pointer on the project (``projects.active_prompt_id``), so
"exactly one active version" holds by construction, also under concurrent requests. A composite
foreign key ``(projects.id, active_prompt_id) → (prompt_versions.project_id, id)`` makes the
pointer unable to name another project's version; the candidate pointer
(``candidate_prompt_id``) is built the same way.

A version is a whole configuration: the text plus the model (a name from the ``MODELS``
allowlist), the temperature (None: the provider's default) and the output-token budget. They
version together, so changing only the model is a new version.

``UNIQUE(project_id, version)`` keeps numbers from repeating; the service retries on conflict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, CreatedAtMixin

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

    project: Mapped[Project] = relationship(foreign_keys=[project_id])

    @property
    def is_active(self) -> bool:
        return self.project.active_prompt_id == self.id

    @property
    def is_candidate(self) -> bool:
        return self.project.candidate_prompt_id == self.id

    @property
    def settings(self) -> dict:
        """What versions together with the text (compared by "no changes" and the diff)."""
        return {
            "model": self.model,
            "temperature": self.temperature,
            "max_output_tokens": self.max_output_tokens,
        }
