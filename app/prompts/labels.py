"""Named labels: pointers at a project's versions (``staging``, ``eu`` …), listed on the Prompt
tab, moved by their owner, and asked for by chats, pinned chats and the API instead of a number.

``production`` and ``candidate`` are built in: they are the project's two pointers (what serves,
and what the canary tries), so they resolve to those and cannot be created, moved or deleted
here (promote, rollback and the candidate controls move them). Every other name is a row of
``prompt_labels`` (unique per project; the composite foreign key keeps it on the project's own
versions; deleting a version's project deletes its labels).

``labelled_version`` works below the ownership layer (the caller has checked the project, as
``chat.start`` has); the other functions take the acting user and go through
``get_project_for``, so another user's project is a 404 on every route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, NotFound, ValidationFailed
from app.extensions import db
from app.models import Project, PromptLabel, PromptVersion, User
from app.models.base import db_int, utcnow
from app.projects.services import get_project_for
from app.prompts.versions import active_version, candidate_version, existing_version

BUILT_IN = ("production", "candidate")
NAME_MAX = 40
NAME_RULE = re.compile(r"[a-z0-9][a-z0-9_-]*")
NAME_HELP = (
    f"Use lowercase letters, digits, - and _ (at most {NAME_MAX}, starting with a letter or digit)."
)
LABELS_MAX = 50  # per project


@dataclass(frozen=True)
class Label:
    """A label as shown: its name, the version it points at (None: a built-in pointer that
    points nowhere yet) and whether it is one of the built-in two."""

    name: str
    version: PromptVersion | None
    built_in: bool = False


def clean_name(raw: object) -> str:
    name = raw.strip() if isinstance(raw, str) else ""
    if not name:
        raise ValidationFailed(fields={"name": "Give the label a name."})
    if len(name) > NAME_MAX or NAME_RULE.fullmatch(name) is None:
        raise ValidationFailed(fields={"name": NAME_HELP})
    return name


def labelled_version(project: Project, name: object) -> PromptVersion:
    """The version ``name`` points at in ``project`` (ownership checked by the caller): the
    built-in ``production`` and ``candidate`` are the project's pointers. ``NotFound`` for a
    label the project does not have (or that points nowhere)."""
    if not isinstance(name, str) or NAME_RULE.fullmatch(name) is None or len(name) > NAME_MAX:
        raise NotFound("This project has no such label.")
    if name == "production":
        found = active_version(project)
    elif name == "candidate":
        found = candidate_version(project)
    else:
        label = _find(project.id, name)
        found = label.version if label else None
    if found is None:
        raise NotFound(f"This project has no label “{name}”.")
    return found


def _find(project_id: int, name: str) -> PromptLabel | None:
    return db.session.scalar(
        select(PromptLabel).where(PromptLabel.project_id == project_id, PromptLabel.name == name)
    )


def _version(project: Project, raw: object) -> PromptVersion:
    number = db_int(str(raw)) if isinstance(raw, int) and not isinstance(raw, bool) else None
    if number is None:
        raise ValidationFailed("Choose a version.", fields={"version": "Give a version number."})
    return existing_version(project, number)


def _not_built_in(name: str) -> None:
    if name in BUILT_IN:
        raise ValidationFailed(
            f"“{name}” is built in: promote, roll back or choose a candidate to move it.",
            fields={"name": f"“{name}” is built in; choose another name."},
        )


def list_labels(*, user: User, project_id: int) -> tuple[Project, list[Label]]:
    """The built-in two first, then the project's labels by name."""
    project = get_project_for(user, project_id)
    rows = db.session.scalars(
        select(PromptLabel).where(PromptLabel.project_id == project.id).order_by(PromptLabel.name)
    )
    labels = [
        Label("production", active_version(project), built_in=True),
        Label("candidate", candidate_version(project), built_in=True),
    ]
    return project, labels + [Label(row.name, row.version) for row in rows]


def create_label(*, user: User, project_id: int, name: object, version: object) -> Label:
    """A new label on a version; ``Conflict`` when the project has one by that name."""
    project = get_project_for(user, project_id)
    name = clean_name(name)
    _not_built_in(name)
    target = _version(project, version)
    if _find(project.id, name) is not None:
        raise Conflict(
            f"The label “{name}” is used already; move it instead.",
            fields={"name": "This name is used already."},
        )
    count = db.session.scalar(
        select(func.count()).select_from(PromptLabel).where(PromptLabel.project_id == project.id)
    )
    if count >= LABELS_MAX:
        raise ValidationFailed(fields={"name": f"A project has at most {LABELS_MAX} labels."})
    db.session.add(PromptLabel(project_id=project.id, name=name, version_id=target.id))
    try:
        db.session.commit()
    except IntegrityError as exc:  # created at the same moment by another request
        db.session.rollback()
        raise Conflict(
            f"The label “{name}” is used already; move it instead.",
            fields={"name": "This name is used already."},
        ) from exc
    return Label(name, target)


def move_label(*, user: User, project_id: int, name: str, version: object) -> Label:
    """Point an existing label at another version (``NotFound`` for an unknown label)."""
    project = get_project_for(user, project_id)
    _not_built_in(name)
    label = _find(project.id, name)
    if label is None:
        raise NotFound(f"This project has no label “{name}”.")
    target = _version(project, version)
    label.version_id = target.id
    label.updated_at = utcnow()
    db.session.commit()
    return Label(name, target)


def delete_label(*, user: User, project_id: int, name: str) -> None:
    project = get_project_for(user, project_id)
    _not_built_in(name)
    label = _find(project.id, name)
    if label is None:
        raise NotFound(f"This project has no label “{name}”.")
    db.session.delete(label)
    db.session.commit()
