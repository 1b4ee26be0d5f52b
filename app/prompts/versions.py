"""Prompt-version operations below the ownership layer: validation, numbering, the pointer.

Callers have already checked that the acting user owns the project (``get_project_for``).
``add_version`` flushes but does not commit, so project creation can store version 1 in the
same transaction as the project.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import func, select, update

from app.errors import ValidationFailed
from app.extensions import db
from app.models import Project, PromptVersion, User
from app.models.base import utcnow

NOTE_MAX = 200
# Used when a project has no prompt version yet; shown as such on the page and in the API.
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer clearly and concisely. "
    "If you are unsure, say so instead of guessing."
)


def clean_content(content: str | None) -> str:
    text = (content or "").strip()
    if not text:
        raise ValidationFailed(fields={"content": "The prompt cannot be empty."})
    limit = current_app.config["PROMPT_MAX_CHARS"]
    if len(text) > limit:
        raise ValidationFailed(
            fields={"content": f"Use at most {limit:,} characters (this has {len(text):,})."}
        )
    return text


def clean_note(note: str | None) -> str | None:
    note = (note or "").strip() or None
    if note and len(note) > NOTE_MAX:
        raise ValidationFailed(fields={"note": f"Use at most {NOTE_MAX} characters."})
    return note


def active_version(project: Project) -> PromptVersion | None:
    if project.active_prompt_id is None:
        return None
    return db.session.get(PromptVersion, project.active_prompt_id)


def system_prompt_for(project: Project) -> tuple[str, PromptVersion | None]:
    """The text chat sends as instructions, and the version it came from (None = default)."""
    version = active_version(project)
    return (version.content, version) if version else (DEFAULT_SYSTEM_PROMPT, None)


def add_version(
    project: Project, *, author: User | None, content: str, note: str | None, activate: bool
) -> PromptVersion:
    """Insert the next version (flush only; the caller commits). Content must be clean.

    The project row is locked first (``FOR UPDATE``; SQLite serialises writers anyway), so
    concurrent saves on one project take numbers one after another instead of colliding.
    """
    db.session.execute(select(Project.id).where(Project.id == project.id).with_for_update())
    next_number = (
        db.session.scalar(
            select(func.max(PromptVersion.version)).where(PromptVersion.project_id == project.id)
        )
        or 0
    ) + 1
    version = PromptVersion(
        project_id=project.id,
        version=next_number,
        content=content,
        note=note,
        author_id=author.id if author else None,
    )
    db.session.add(version)
    db.session.flush()
    if activate:
        point_at(project.id, version.id)
    return version


def point_at(project_id: int, version_id: int) -> None:
    # One UPDATE: the switch is atomic, and there is only ever one pointer.
    db.session.execute(
        update(Project)
        .where(Project.id == project_id)
        .values(active_prompt_id=version_id, updated_at=utcnow())
    )
