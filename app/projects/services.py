"""Project rules. Every lookup goes through ``get_project_for``: another user's project is
indistinguishable from a missing one (404), on every route that uses it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError

from app.errors import NotFound, ValidationFailed
from app.extensions import db
from app.models import Conversation, Project, PromptVersion, StoredFile, User
from app.prompts.versions import (
    active_version,
    add_version,
    clean_content,
    clean_template,
    find_version,
    settings_of,
    template_of,
)

NAME_MAX = 120
DESCRIPTION_MAX = 2000
SLUG_MAX = 48


def slugify(name: str) -> str:
    """The model-name form of a project's name: ASCII lower-case letters, digits and hyphens
    ("Ada's Support Bot ü" → ``adas-support-bot-u``); ``project`` when nothing is left."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "")).strip("-")
    text = text[:SLUG_MAX].strip("-")
    return text or "project"


def _free_slug(user: User, name: str) -> str:
    """``slugify(name)``, or with ``-2``, ``-3`` … when another of ``user``'s projects has it.
    Two projects created at the same moment with the same name: the unique constraint refuses
    the second, and its creation is tried again (``create_project``)."""
    base = slugify(name)
    taken = set(
        db.session.scalars(
            select(Project.slug).where(
                Project.owner_id == user.id,
                (Project.slug == base) | Project.slug.like(f"{base[:44]}-%"),
            )
        )
    )
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base[:44]}-{n}"
    return slug


def _clean(name: str | None, description: str | None, *, partial: bool) -> dict[str, str]:
    values: dict[str, str] = {}
    fields: dict[str, str] = {}
    if name is not None or not partial:
        name = (name or "").strip()
        if not name:
            fields["name"] = "Give the project a name."
        elif len(name) > NAME_MAX:
            fields["name"] = f"Use at most {NAME_MAX} characters."
        values["name"] = name
    if description is not None or not partial:
        description = (description or "").strip()
        if len(description) > DESCRIPTION_MAX:
            fields["description"] = f"Use at most {DESCRIPTION_MAX} characters."
        values["description"] = description
    if fields:
        raise ValidationFailed(fields=fields)
    return values


def list_projects(*, user: User) -> list[Project]:
    stmt = (
        select(Project)
        .where(Project.owner_id == user.id)
        .order_by(Project.updated_at.desc(), Project.id.desc())
    )
    return list(db.session.scalars(stmt))


@dataclass(frozen=True)
class ProjectCard:
    """What the dashboard shows for one project."""

    project: Project
    active_version: int | None
    conversations: int
    files: int
    last_activity: datetime


def project_cards(*, user: User) -> list[ProjectCard]:
    """The user's projects with their counts, most recently active first, in one query.

    Last activity is the later of the project's own change (rename, prompt save, rollback) and
    its newest conversation's."""
    conversations = (
        select(func.count(Conversation.id))
        .where(Conversation.project_id == Project.id)
        .scalar_subquery()
    )
    last_chat = (
        select(func.max(Conversation.updated_at))
        .where(Conversation.project_id == Project.id)
        .scalar_subquery()
    )
    files = (
        select(func.count(StoredFile.id))
        .where(StoredFile.project_id == Project.id)
        .scalar_subquery()
    )
    rows = db.session.execute(
        select(Project, PromptVersion.version, conversations, last_chat, files)
        .outerjoin(PromptVersion, PromptVersion.id == Project.active_prompt_id)
        .where(Project.owner_id == user.id)
    ).all()
    cards = [
        ProjectCard(
            project=project,
            active_version=version,
            conversations=n_conversations,
            files=n_files,
            last_activity=max(project.updated_at, chatted or project.updated_at),
        )
        for project, version, n_conversations, chatted, n_files in rows
    ]
    cards.sort(key=lambda c: (c.last_activity, c.project.id), reverse=True)
    return cards


def latest_project(*, user: User) -> Project | None:
    """The user's most recently active project (as the dashboard orders them), or None."""
    cards = project_cards(user=user)
    return cards[0].project if cards else None


_OWNED: dict[tuple[int, ...], tuple[tuple, Any]] = {}
_OWNED_MAX = 32


def get_project_for(user: User, project_id: int) -> Project:
    return get_project_with(user, project_id)[0]


def get_project_with(
    user: User, project_id: int, *extra, params: dict[str, Any] | None = None
) -> tuple[Project, ...]:
    """``user``'s project ``project_id`` (else ``NotFound``), followed by the values of the
    ``extra`` column expressions (such as an ``EXISTS`` on ``Project.id``) read by the same
    query: one round trip where a hot path would make two. Values for bound parameters in
    ``extra`` come in ``params``.

    The statement is built once per combination of ``extra`` and reused (the chat turn's
    first statement: building it on every call cost more CPU than running it), so pass
    expressions that are built once, not new ones on each call."""
    key = tuple(map(id, extra))
    found = _OWNED.get(key)
    if found is None:
        stmt = select(Project, *extra).where(
            Project.id == bindparam("owned_project_id"),
            Project.owner_id == bindparam("owned_owner_id"),
        )
        if len(_OWNED) >= _OWNED_MAX:  # a caller building its expressions anew each time
            found = (extra, stmt)
        else:
            found = _OWNED[key] = (extra, stmt)  # holding ``extra`` keeps its ids its own
    values = {"owned_project_id": project_id, "owned_owner_id": user.id, **(params or {})}
    row = db.session.execute(found[1], values).first()
    if row is None:
        raise NotFound("No such project.")
    return tuple(row)


def create_project(
    *,
    user: User,
    name: str | None,
    description: str | None = None,
    system_prompt: str | None = None,
) -> Project:
    """Create a project; a non-blank ``system_prompt`` becomes its active version 1."""
    values = _clean(name, description, partial=False)
    prompt = _clean_prompt(system_prompt) if (system_prompt or "").strip() else None
    template = _template(prompt, None) if prompt else None
    for attempt in range(3):
        project = Project(owner_id=user.id, slug=_free_slug(user, values["name"]), **values)
        try:
            with db.session.begin_nested():
                db.session.add(project)
                db.session.flush()
            break
        except IntegrityError:  # the same slug, taken a moment ago by a concurrent creation
            if attempt == 2:
                raise
    if prompt:
        add_version(
            project,
            author=user,
            content=prompt,
            note="Initial prompt",
            activate=True,
            template=template,
        )
    db.session.commit()
    return project


def update_project(
    *,
    user: User,
    project_id: int,
    name: str | None = None,
    description: str | None = None,
    system_prompt: str | None = None,
    prompt_base: int | None = None,
) -> Project:
    """Change the name and description; a ``system_prompt`` that differs from production's
    text becomes a new production version (the model settings carried over), one that does not
    changes nothing. ``prompt_base`` is the version number the edit form was opened on (0: none):
    a text left as it was then is unchanged even if production moved on meanwhile, and a changed
    text over a production that moved on is refused, so an old form never silently reverts a
    newer version."""
    project = get_project_for(user, project_id)
    current = active_version(project)
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    prompt = template = None
    try:
        values = _clean(name, description, partial=True)
    except ValidationFailed as exc:
        errors.update(exc.fields or {})
    if system_prompt is not None:
        try:
            prompt = _changed_prompt(project, current, system_prompt, prompt_base)
            template = _template(prompt, template_of(current).variables) if prompt else None
        except ValidationFailed as exc:
            errors.update(exc.fields or {})
    if errors:
        raise ValidationFailed(fields=errors)
    for key, value in values.items():
        setattr(project, key, value)
    if prompt is not None:
        add_version(
            project,
            author=user,
            content=prompt,
            note=EDITED_NOTE,
            activate=True,
            settings=settings_of(current),
            template=template,
        )
    db.session.commit()
    return project


EDITED_NOTE = "Edited with the project"


def _clean_prompt(text: str | None) -> str:
    try:
        return clean_content(text)
    except ValidationFailed as exc:  # the field is called system_prompt here
        raise ValidationFailed(fields={"system_prompt": exc.fields["content"]}) from None


def _template(text: str, variables: list | None):
    """The text's template part (``clean_template``), its errors on ``system_prompt``."""
    try:
        return clean_template(text, variables)
    except ValidationFailed as exc:
        fields = {("system_prompt" if k == "content" else k): v for k, v in exc.fields.items()}
        raise ValidationFailed(exc.message, fields=fields) from None


def _changed_prompt(
    project: Project, current: PromptVersion | None, text: str, base: int | None
) -> str | None:
    """The text to save over production (``current``) as a new version, or None when there is
    nothing to save."""
    if not text.strip() and current is None:
        return None  # no prompt before, none now: the built-in default keeps answering
    text = _clean_prompt(text)
    if base is not None:
        opened = find_version(project.id, base) if base else None
        if text == (opened.content if opened else ""):
            return None
        now = current.version if current else 0
        if now != base:
            raise ValidationFailed(
                fields={
                    "system_prompt": f"The prompt was changed elsewhere (production is now "
                    f"version {now}) since this form was opened. Your text is kept: check it "
                    "against the Prompt tab and save again to make it the next version."
                }
            )
    if current is not None and current.content == text:
        return None
    return text


# What other features keep outside the database for a project: each hook is called with the
# project id before its rows go, and returns what to do once they are gone (or None). Files
# registers one (bytes and OpenAI copies); projects import no feature above them.
DeleteHook = Callable[[int], Callable[[], None] | None]
_on_delete: list[DeleteHook] = []


def on_project_delete(hook: DeleteHook) -> DeleteHook:
    if hook not in _on_delete:
        _on_delete.append(hook)
    return hook


def delete_project(*, user: User, project_id: int) -> None:
    """Delete the project; its rows go by cascade, then what features keep outside the database
    (``on_project_delete``: its files' bytes and OpenAI copies)."""
    project = get_project_for(user, project_id)
    afterwards = [hook(project.id) for hook in _on_delete]
    db.session.delete(project)
    db.session.commit()
    for cleanup in afterwards:
        if cleanup is not None:
            cleanup()
