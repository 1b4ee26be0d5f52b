"""Compare: one message answered side by side by two configurations, and which answer is better.

A side is a prompt version of the project, optionally under another model from the allowlist.
``start_comparison`` validates everything first (so nothing is stored for a bad request), then
starts each side as a normal chat turn in a new conversation pinned to its version and model
(``chat.start.pinned``: the spending budget and the input cap are checked there), records the
``Comparison`` row tying them together, all in one transaction (``transaction()``: a side
refused by a budget or the input cap leaves nothing behind, not half a comparison), and only then
starts
both turns generating in the background at once (``chat.turns.launch_detached``). Readers
attach to each turn with ``GET /api/turns/<id>/events``; Stop works per turn as in the chat.

This package sits above chat and prompts; nothing below imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from app import catalog
from app.chat import replies, start, turns
from app.errors import NotFound, ValidationFailed
from app.extensions import db
from app.models import Choice, Comparison, Message, Project, PromptVersion, User
from app.models.base import MAX_DB_INT, utcnow
from app.projects.services import get_project_for
from app.prompts.labels import labelled_version
from app.prompts.versions import find_version
from app.transactions import transaction

SIDES = ("left", "right")
LIST_DEFAULT = 20
LIST_MAX = 100
UNSET = object()  # "choice" absent from a request (None clears it)
TITLE_MAX = 200


@dataclass(frozen=True)
class Side:
    """One side as asked for, validated: the version and the effective model."""

    version: PromptVersion
    model: str  # what answers: the override, or the version's own model
    override: str | None  # the model given when it differs from the version's (else None)


@dataclass(frozen=True)
class SideView:
    version: int | None  # the version's number (None if it no longer exists)
    model: str
    conversation_id: int | None  # None once that conversation was deleted
    reply: Message | None


@dataclass(frozen=True)
class ComparisonView:
    comparison: Comparison
    left: SideView
    right: SideView


# --- reading -----------------------------------------------------------------------------------


def _owned():
    return (
        select(Comparison)
        .join(Project, Project.id == Comparison.project_id)
        .options(joinedload(Comparison.left_version), joinedload(Comparison.right_version))
    )


def get_comparison_for(user: User, comparison_id: int) -> Comparison:
    found = db.session.scalar(
        _owned().where(Comparison.id == comparison_id, Project.owner_id == user.id)
    )
    if found is None:
        raise NotFound("No such comparison.")
    return found


def get_comparison(*, user: User, comparison_id: int) -> ComparisonView:
    return _views([get_comparison_for(user, comparison_id)])[0]


def list_comparisons(
    *, user: User, project_id: int, before: int | None = None, limit: int = LIST_DEFAULT
) -> tuple[Project, list[ComparisonView], bool]:
    """A project's comparisons, newest first, at most ``limit`` (1-100), older than the
    comparison ``before`` when given; and whether there are more."""
    project = get_project_for(user, project_id)
    limit = max(1, min(limit, LIST_MAX))
    stmt = _owned().where(Comparison.project_id == project.id)
    if before is not None:
        cursor = db.session.get(Comparison, before)
        if cursor is not None and cursor.project_id == project.id:
            stmt = stmt.where(
                or_(
                    Comparison.created_at < cursor.created_at,
                    (Comparison.created_at == cursor.created_at) & (Comparison.id < cursor.id),
                )
            )
        else:
            stmt = stmt.where(Comparison.id < before)
    stmt = stmt.order_by(Comparison.created_at.desc(), Comparison.id.desc()).limit(limit + 1)
    rows = list(db.session.scalars(stmt).unique())
    return project, _views(rows[:limit]), len(rows) > limit


def _views(rows: list[Comparison]) -> list[ComparisonView]:
    """Each comparison with its two replies as stored now (one query for all of them)."""
    ids = {i for c in rows for i in (c.left_reply_id, c.right_reply_id) if i is not None}
    found = _replies(ids)
    return [
        ComparisonView(
            c,
            SideView(
                c.left_version.version if c.left_version else None,
                c.left_model,
                c.left_conversation_id,
                found.get(c.left_reply_id),
            ),
            SideView(
                c.right_version.version if c.right_version else None,
                c.right_model,
                c.right_conversation_id,
                found.get(c.right_reply_id),
            ),
        )
        for c in rows
    ]


def _replies(ids: set[int]) -> dict[int, Message]:
    if not ids:
        return {}
    stmt = select(Message).where(Message.id.in_(ids))
    rows = list(db.session.scalars(stmt))
    # A reply whose process died shows as interrupted at once (as the chat page does).
    expired = [replies.expire_stale([row]) for row in rows]  # each conversation's own sweep
    if any(expired):
        rows = list(db.session.scalars(stmt.execution_options(populate_existing=True)))
    return {row.id: row for row in rows}


# --- starting ----------------------------------------------------------------------------------


def _side(project: Project, name: str, raw: object, errors: dict[str, str]) -> Side | None:
    """Validate one side (``{version | label, model?}``), adding what is wrong to ``errors``.
    A label (``prompts.labels``) stands for the version it points at now."""
    if not isinstance(raw, dict):
        errors[name] = "Give the side as {version, model?}."
        return None
    number, model, label = raw.get("version"), raw.get("model"), raw.get("label")
    version = None
    if label is not None and number is not None:
        errors[f"{name}.label"] = "Give a version or a label, not both."
    elif label is not None:
        try:
            version = labelled_version(project, label)
        except NotFound:
            errors[f"{name}.label"] = "This project has no such label."
    elif number is None:
        errors[f"{name}.version"] = "Choose a version."
    elif isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_DB_INT:
        errors[f"{name}.version"] = "Give a version number (1, 2, 3 …)."
    else:
        version = find_version(project.id, number)
        if version is None:
            errors[f"{name}.version"] = f"This project has no version {number}."
    if model is not None:
        if catalog.listed_name(model) is None:
            errors[f"{name}.model"] = catalog.not_offered()
            return None
        model = catalog.listed_name(model)
    if version is None:
        return None
    effective = model or version.model
    return Side(version, effective, effective if effective != version.model else None)


def _title(base: str, side: Side) -> str:
    """The pinned conversation's title in the chat list: the message's, and which side."""
    return f"{base} (compare: v{side.version.version} · {side.model})"[:TITLE_MAX]


def _declared_by(version, variables: dict | None) -> dict | None:
    """The values one side's version declares: a name only the other side uses is left out
    for this one (unknown to both: refused above)."""
    if not variables:
        return variables
    names = {v["name"] for v in version.variables}
    return {name: value for name, value in variables.items() if name in names}


def start_comparison(
    *,
    user: User,
    project_id: int,
    message: object,
    left: object,
    right: object,
    variables: dict | None = None,
) -> ComparisonView:
    """Answer ``message`` under both sides at once, each with the template ``variables`` its
    version declares (a name neither declares: 422); see the module docstring.

    Refused with a 422 before anything is stored: a blank or too long message, a side that is
    not ``{version, model?}``, a version number this project does not have, a model not in
    the allowlist, and both sides the same version under the same model (nothing to compare).
    """
    project = get_project_for(user, project_id)
    errors: dict[str, str] = {}
    text = ""
    if message is not None and not isinstance(message, str):
        errors["message"] = "Must be a string."
    else:
        try:
            text = start.clean_message(message)
        except ValidationFailed as exc:
            errors.update(exc.fields or {})
    sides = [
        _side(project, name, raw, errors) for name, raw in zip(SIDES, (left, right), strict=True)
    ]
    a, b = sides
    if a and b and a.version.id == b.version.id and a.model == b.model:
        errors["right"] = "Choose another version or another model than the left side."
    if a and b and variables:
        declared = {v["name"] for side in (a, b) for v in side.version.variables}
        for name in sorted(set(variables) - declared):
            errors[f"variables.{name}"] = "Neither version declares this variable."
    if errors or a is None or b is None:
        raise ValidationFailed("Check the message and both sides.", fields=errors)

    with transaction(keep_loaded=True):  # the turns render the rows they read
        started = [
            start.pinned(
                user=user,
                project_id=project.id,
                message=text,
                version=side.version.version,
                model=side.override,
                title=_title(start.title_from(text), side),
                variables=_declared_by(side.version, variables),
            )
            for side in (a, b)
        ]
        comparison = Comparison(
            project_id=project.id,
            message=text,
            left_version_id=a.version.id,
            right_version_id=b.version.id,
            left_model=a.model,
            right_model=b.model,
            left_conversation_id=started[0].conversation_id,
            right_conversation_id=started[1].conversation_id,
            left_reply_id=started[0].reply_id,
            right_reply_id=started[1].reply_id,
        )
        db.session.add(comparison)
    for turn in started:  # both generate at once, each in a background thread
        turns.launch_detached(turn)
    return get_comparison(user=user, comparison_id=comparison.id)


# --- the preference ----------------------------------------------------------------------------


def set_preference(*, user: User, comparison_id: int, choice: object = UNSET) -> ComparisonView:
    """Record which answer is better: ``left``, ``right`` or ``tie``; ``None`` clears it. It can
    be changed at any time, also while the replies are still being written."""
    comparison = get_comparison_for(user, comparison_id)
    allowed = [c.value for c in Choice]
    if choice is UNSET:
        raise ValidationFailed(fields={"choice": "Say left, right, tie or null."})
    if choice is not None and choice not in allowed:
        raise ValidationFailed(fields={"choice": "Use left, right, tie, or null to clear."})
    if comparison.choice != choice:
        comparison.choice = choice
        comparison.chosen_at = utcnow() if choice is not None else None
        db.session.commit()
    return get_comparison(user=user, comparison_id=comparison.id)


# --- the page's pickers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    version: int | None  # the number preselected (None: the project has no version)
    model: str | None  # a model override preselected (None: the version's own model)


def default_picks(
    project: Project,
    versions: list[PromptVersion],
    *,
    left: int | None = None,
    right: int | None = None,
    shown: ComparisonView | None = None,
) -> tuple[Pick, Pick]:
    """What the two pickers start on: the numbers asked for (``?left=5&right=4``) when the
    project has them; else the comparison shown, as it was; else production on the left and
    the candidate (or the newest other version) on the right."""
    numbers = {v.version: v for v in versions}  # newest first
    if shown is not None and left is None and right is None:
        return _pick_of(shown.left, numbers), _pick_of(shown.right, numbers)
    production = next((v.version for v in versions if v.id == project.active_prompt_id), None)
    candidate = next((v.version for v in versions if v.id == project.candidate_prompt_id), None)
    newest = versions[0].version if versions else None
    if left not in numbers:
        left = production or newest
    if right not in numbers:
        others = [n for n in (candidate, *numbers) if n is not None and n != left]
        right = others[0] if others else left
    return Pick(left, None), Pick(right, None)


def _pick_of(side: SideView, numbers: dict[int, PromptVersion]) -> Pick:
    version = numbers.get(side.version) if side.version is not None else None
    if version is None:
        return Pick(next(iter(numbers), None), None)
    return Pick(version.version, side.model if side.model != version.model else None)
