"""Prompt version rules, shared by the project page and the JSON API.

Versions are immutable: the text and the model settings together. Saving creates version
``max + 1`` (a unique constraint plus a retry keeps numbers from repeating when two saves race)
and, by default, points the project at it in the same transaction ("make it live"); or makes it
the project's **candidate**, to be tried in pinned chats, compared, and measured on a share of
new conversations (the canary) before ``promote_candidate`` makes it production. Activating an
old version (rollback) only moves the pointer.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, replace

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app import formats
from app.errors import Conflict, NotFound, ValidationFailed
from app.extensions import db
from app.models import Message, Project, PromptVersion, User
from app.models.base import db_int
from app.models.prompt import CONFIGURATION
from app.projects.services import get_project_for
from app.prompts import labels, metrics
from app.prompts.versions import (
    Settings,
    Template,
    active_version,
    add_version,
    candidate_version,
    clean_content,
    clean_note,
    clean_settings,
    clean_template,
    find_version,
    point_at,
    point_candidate_at,
    settings_of,
    template_of,
)

log = logging.getLogger(__name__)
SAVE_ATTEMPTS = 5


CANARY_MAX = 100
KEEP = object()  # "not given": a save keeps the temperature of the version it starts from


@dataclass(frozen=True)
class SaveResult:
    version: PromptVersion
    created: bool  # False: text and settings equal the version saved over, nothing was stored


def create_version(
    *,
    user: User,
    project_id: int,
    content: str | None,
    note: str | None = None,
    activate: bool = True,
    candidate: bool = False,
    model: object = None,
    temperature: object = KEEP,
    max_output_tokens: object = None,
    variables: object = KEEP,
    output_format: object = None,
    output_schema: object = None,
) -> SaveResult:
    """Save a new version: live now (``activate``), as the candidate (``candidate``), or only
    into the history (neither). Settings not given are kept from the version it is saved over
    (the candidate when saving a candidate and there is one, else production); so are its
    variable declarations (``variables``), and names the text uses that are not declared are
    added as required strings."""
    if activate and candidate:
        raise ValidationFailed(
            "A version is either made live or saved as the candidate.",
            fields={"candidate": "Do not combine with activate."},
        )
    project = get_project_for(user, project_id)
    text = clean_content(content)
    note = clean_note(note)
    current = active_version(project)
    base = (candidate_version(project) if candidate else None) or current
    base_settings = settings_of(base)
    settings = clean_settings(
        model,
        base_settings.temperature if temperature is KEEP else temperature,
        max_output_tokens,
        base=base_settings,
    )
    settings = _with_format(settings, base_settings, output_format, output_schema)
    template = clean_template(text, template_of(base).variables if variables is KEEP else variables)
    same = _same_as(base, text, settings, template)
    if same is not None:
        return SaveResult(same, created=False)
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        try:
            version = add_version(
                project,
                author=user,
                content=text,
                note=note,
                activate=activate,
                settings=settings,
                template=template,
            )
            if candidate:
                point_candidate_at(project.id, version.id)
            db.session.commit()
            return SaveResult(version, created=True)
        except IntegrityError:
            # Backstop for databases without row locks: another save took the number.
            db.session.rollback()
            log.info("prompt version number taken, retrying (attempt %s)", attempt)
            project = get_project_for(user, project_id)
    raise Conflict("The prompt is being saved concurrently; try again.")


def _with_format(
    settings: Settings, base: Settings, output_format: object, output_schema: object
) -> Settings:
    """``settings`` with the output format a save asks for (``formats.clean_format``); neither
    given keeps the base version's, a schema alone applies to the base's format."""
    if output_format is None and output_schema is None:
        return replace(settings, output_format=base.output_format, output_schema=base.output_schema)
    schema = output_schema if output_schema is not None else base.output_schema
    chosen, schema = formats.clean_format(output_format or base.output_format, schema)
    return replace(settings, output_format=chosen, output_schema=schema)


def _same_as(
    version: PromptVersion | None, text: str, settings: Settings, template: Template
) -> PromptVersion | None:
    if version is None or version.content != text or settings_of(version) != settings:
        return None
    if template_of(version) != template:
        return None
    return version


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
    version = find_version(project.id, number)
    if version is None:
        raise NotFound(f"Version {number} does not exist.")
    return version


def activate_version(*, user: User, project_id: int, number: int) -> PromptVersion:
    """Make a version production (rollback; a candidate activated this way is promoted)."""
    version = get_version(user=user, project_id=project_id, number=number)
    point_at(project_id, version.id)
    db.session.commit()
    return version


# --- candidate and canary ----------------------------------------------------------------------


def make_candidate(*, user: User, project_id: int, number: int) -> PromptVersion:
    """Make an existing version the candidate (replacing any other; the canary starts at 0)."""
    version = get_version(user=user, project_id=project_id, number=number)
    if version.is_active:
        raise ValidationFailed(
            f"Version {number} is production already.",
            fields={"version": "Choose a version that is not live."},
        )
    if not version.is_candidate:
        point_candidate_at(project_id, version.id)
        db.session.commit()
    return version


def discard_candidate(*, user: User, project_id: int) -> Project:
    """End the trial: no candidate, no canary. The version stays in the history, and
    conversations the canary gave it keep it."""
    project = get_project_for(user, project_id)
    if project.candidate_prompt_id is not None:
        point_candidate_at(project.id, None)
        db.session.commit()
    return project


def promote_candidate(*, user: User, project_id: int) -> PromptVersion:
    project = get_project_for(user, project_id)
    version = candidate_version(project)
    if version is None:
        raise Conflict("This project has no candidate to promote.")
    point_at(project.id, version.id)  # clears the candidate and the canary
    db.session.commit()
    return version


def set_canary(*, user: User, project_id: int, percent: object) -> Project:
    """Send ``percent`` % of new conversations to the candidate (0 ends the canary)."""
    project = get_project_for(user, project_id)
    if isinstance(percent, bool) or not isinstance(percent, int):
        raise ValidationFailed(fields={"percent": "Give a whole number from 0 to 100."})
    if not 0 <= percent <= CANARY_MAX:
        raise ValidationFailed(fields={"percent": "Use a share from 0 to 100."})
    if percent and project.candidate_prompt_id is None:
        raise ValidationFailed(
            "Save or choose a candidate version first.",
            fields={"percent": "There is no candidate to send traffic to."},
        )
    project.canary_percent = percent
    db.session.commit()
    return project


def _version_number(raw: int | str | None, name: str) -> int:
    number = db_int(str(raw)) if isinstance(raw, int | str) else None
    if number is not None:
        return number
    raise ValidationFailed(
        f"Choose the versions to compare ({name}).", fields={name: "Give a version number."}
    )


@dataclass(frozen=True)
class SettingChange:
    name: str  # a key of ``DIFF_FIELDS``
    old: object
    new: object

    @property
    def label(self) -> str:
        return DIFF_FIELDS[self.name]


# What the diff compares besides the text: the configuration (app/models/prompt.py), then the
# labels pointing at each version (not versioned with it, but what decides where it serves).
DIFF_FIELDS = {**CONFIGURATION, "labels": "Labels"}


@dataclass(frozen=True)
class VersionDiff:
    a: int
    b: int
    text: str  # unified line diff of the prompt text
    settings_changes: list[SettingChange]


def diff_versions(
    *, user: User, project_id: int, from_number: int | str | None, to_number: int | str | None
) -> VersionDiff:
    """The text diff and every other difference between two versions: each field of a
    version's configuration (``CONFIGURATION``: model settings, variables, output format) that
    differs, and the labels pointing at each when they differ. Ownership is checked first."""
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
    before, after = old.settings, new.settings
    changes = [SettingChange(k, before[k], after[k]) for k in before if before[k] != after[k]]
    named: dict[int, list[str]] = {}
    for label in labels.list_labels(user=user, project_id=project_id)[1]:
        if label.version is not None:
            named.setdefault(label.version.version, []).append(label.name)
    if named.get(a, []) != named.get(b, []):
        changes.append(SettingChange("labels", named.get(a, []), named.get(b, [])))
    return VersionDiff(a, b, "".join(line + "\n" for line in lines), changes)


@dataclass(frozen=True)
class History:
    """The Prompt tab's history, shown beside every prompt page: the versions newest first,
    production and the candidate, and how many replies each version produced."""

    project: Project
    versions: list[PromptVersion]
    active: PromptVersion | None
    candidate: PromptVersion | None
    counts: dict[int, int]


def history_of(*, user: User, project_id: int) -> History:
    project, versions = list_versions(user=user, project_id=project_id)
    active, candidate = release_of(project)
    return History(project, versions, active, candidate, reply_counts(project.id))


def diff_page(
    *, user: User, project_id: int, from_number: int | str | None, to_number: int | str | None
) -> tuple[VersionDiff, History]:
    """The diff page: the diff (ownership checked first), and the history beside it."""
    found = diff_versions(
        user=user, project_id=project_id, from_number=from_number, to_number=to_number
    )
    return found, history_of(user=user, project_id=project_id)


def release_of(project: Project) -> tuple[PromptVersion | None, PromptVersion | None]:
    """(production, candidate) of a project the caller owns."""
    return active_version(project), candidate_version(project)


def get_release(*, user: User, project_id: int) -> Project:
    return get_project_for(user, project_id)


def reply_counts(project_id: int) -> dict[int, int]:
    """How many assistant replies were produced under each version of a project."""
    # count(*), not count(id): the covering ix_messages_version_created then answers alone.
    rows = db.session.execute(
        select(Message.prompt_version_id, func.count())
        .join(PromptVersion, PromptVersion.id == Message.prompt_version_id)
        .where(PromptVersion.project_id == project_id, Message.role == "assistant")
        .group_by(Message.prompt_version_id)
    )
    return {version_id: count for version_id, count in rows}  # noqa: C416 (Result is not a mapping source)


def metrics_for(
    *, user: User, project_id: int, window: str | None, source: str | None = None
) -> metrics.Metrics:
    """Per-version metrics of a project of the user's (``prompts/metrics.py``). ``window`` is
    ``24h``, ``7d`` or ``all``; None (not given) is ``7d``, anything else a 422."""
    project = get_project_for(user, project_id)
    window = metrics.DEFAULT_WINDOW if window is None else window
    if window not in metrics.WINDOWS:
        raise ValidationFailed("Unknown time window.", fields={"window": "Use 24h, 7d or all."})
    source = metrics.DEFAULT_SOURCE if source is None else source
    if source not in metrics.SOURCES:
        raise ValidationFailed(
            "Unknown source.", fields={"source": f"Use {', '.join(metrics.SOURCES)}."}
        )
    return metrics.version_metrics(project, window, source=source)
