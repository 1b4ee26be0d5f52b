"""Prompt version rules, shared by the project page and the JSON API.

Versions are immutable. Saving creates version ``max + 1`` (a unique constraint plus a retry
keeps numbers from repeating when two saves race) and, by default, points the project at it in
the same transaction. Activating an old version (rollback) only moves the pointer.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, NotFound, ValidationFailed
from app.extensions import db
from app.models import Message, Project, PromptVersion, User
from app.models.base import db_int
from app.projects.services import get_project_for
from app.prompts.versions import active_version, add_version, clean_content, clean_note, point_at

log = logging.getLogger(__name__)
SAVE_ATTEMPTS = 5


@dataclass(frozen=True)
class SaveResult:
    version: PromptVersion
    created: bool  # False: the text equals the active version, nothing was stored


def create_version(
    *,
    user: User,
    project_id: int,
    content: str | None,
    note: str | None = None,
    activate: bool = True,
) -> SaveResult:
    project = get_project_for(user, project_id)
    text = clean_content(content)
    note = clean_note(note)
    current = active_version(project)
    if current is not None and current.content == text:
        return SaveResult(current, created=False)
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        try:
            version = add_version(project, author=user, content=text, note=note, activate=activate)
            db.session.commit()
            return SaveResult(version, created=True)
        except IntegrityError:
            # Backstop for databases without row locks: another save took the number.
            db.session.rollback()
            log.info("prompt version number taken, retrying (attempt %s)", attempt)
            project = get_project_for(user, project_id)
    raise Conflict("The prompt is being saved concurrently; try again.")


def list_versions(*, user: User, project_id: int) -> tuple[Project, list[PromptVersion]]:
    project = get_project_for(user, project_id)
    versions = db.session.scalars(
        select(PromptVersion)
        .where(PromptVersion.project_id == project.id)
        .order_by(PromptVersion.version.desc())
    )
    return project, list(versions)


def get_version(*, user: User, project_id: int, number: int) -> PromptVersion:
    project = get_project_for(user, project_id)
    version = db.session.scalar(
        select(PromptVersion).where(
            PromptVersion.project_id == project.id, PromptVersion.version == number
        )
    )
    if version is None:
        raise NotFound(f"Version {number} does not exist.")
    return version


def activate_version(*, user: User, project_id: int, number: int) -> PromptVersion:
    version = get_version(user=user, project_id=project_id, number=number)
    point_at(project_id, version.id)
    db.session.commit()
    return version


def _version_number(raw: int | str | None, name: str) -> int:
    number = db_int(str(raw)) if isinstance(raw, int | str) else None
    if number is not None:
        return number
    raise ValidationFailed(
        f"Choose the versions to compare ({name}).", fields={name: "Give a version number."}
    )


def diff_versions(
    *, user: User, project_id: int, from_number: int | str | None, to_number: int | str | None
) -> tuple[int, int, str]:
    """``(from, to, unified line diff)``. Ownership is checked before anything else."""
    get_project_for(user, project_id)
    a, b = _version_number(from_number, "from"), _version_number(to_number, "to")
    old = get_version(user=user, project_id=project_id, number=a)
    new = get_version(user=user, project_id=project_id, number=b)
    # Lines are compared without their endings: prompts are stored stripped, so the last line
    # has no newline, and a line added after it must not mark it as changed too.
    lines = difflib.unified_diff(
        old.content.splitlines(),
        new.content.splitlines(),
        fromfile=f"v{old.version}",
        tofile=f"v{new.version}",
        lineterm="",
    )
    return a, b, "".join(line + "\n" for line in lines)


def reply_counts(project_id: int) -> dict[int, int]:
    """How many assistant replies were produced under each version of a project."""
    rows = db.session.execute(
        select(Message.prompt_version_id, func.count(Message.id))
        .join(PromptVersion, PromptVersion.id == Message.prompt_version_id)
        .where(PromptVersion.project_id == project_id, Message.role == "assistant")
        .group_by(Message.prompt_version_id)
    )
    return {version_id: count for version_id, count in rows}  # noqa: C416 (Result is not a mapping source)
