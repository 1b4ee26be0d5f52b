"""Prompt-version operations below the ownership layer: validation, numbering, the pointer.

Callers have already checked that the acting user owns the project (``get_project_for``).
``add_version`` flushes but does not commit, so project creation can store version 1 in the
same transaction as the project.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, inspect, select, update
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from app import catalog, templating
from app.errors import ValidationFailed
from app.extensions import db
from app.models import Project, PromptVersion, User
from app.models.base import utcnow

NOTE_MAX = 200
TEMPERATURE_MAX = 2.0  # both OpenAI Responses and OpenRouter accept 0-2 (docs/providers.md)
MIN_OUTPUT_TOKENS = 16  # OpenAI Responses refuses a smaller max_output_tokens
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


@dataclass(frozen=True)
class Template:
    """A version's template part, checked at save: whether its text is rendered, and the
    variables it declares (those its text uses and the save did not declare are added, as
    required strings)."""

    templated: bool
    variables: list[dict]


def clean_template(content: str, variables: object) -> Template:
    """Check the declarations and parse the text (syntax errors name line and column).
    Text without template syntax and without declarations is not a template: sent as it is."""
    try:
        declared = templating.declare(variables)
    except templating.VariableProblems as exc:
        raise ValidationFailed(fields=exc.problems) from None
    if not templating.uses_template(content) and not declared:
        return Template(False, [])
    try:
        used = templating.check(content)
    except templating.TemplateProblem as exc:
        raise ValidationFailed(
            exc.message + " Write {% raw %}…{% endraw %} around text that should keep its braces.",
            fields={"content": exc.message},
        ) from None
    names = {v.name for v in declared}
    added = [templating.Variable(name) for name in sorted(used - names)]
    return Template(True, [v.as_dict() for v in (*declared, *added)])


def template_of(version: PromptVersion | None) -> Template:
    if version is None:
        return Template(False, [])
    return Template(version.templated, list(version.variables or []))


@dataclass(frozen=True)
class Instructions:
    """A turn's instructions: the version's text rendered, and the values used (None when the
    version is not a template)."""

    text: str
    variables: dict | None


def variables_invalid(exc: templating.VariableProblems) -> ValidationFailed:
    names = ", ".join(k.removeprefix("variables.") for k in exc.problems if k) or "the template"
    return ValidationFailed(
        f"The prompt's variables cannot be used ({names}): {'; '.join(exc.problems.values())}",
        code="variables_invalid",
        fields={k or "variables": v for k, v in exc.problems.items()},
    )


def check_variables(version: PromptVersion | None, values: object) -> dict:
    """``values`` given for ``version`` (a call's, or a conversation's): only names it declares,
    each of its type (``ValidationFailed``, ``variables_invalid``). None values are dropped."""
    declared = templating.loaded(version.variables) if version is not None else []
    try:
        return templating.check_values(declared, values)
    except templating.VariableProblems as exc:
        raise variables_invalid(exc) from None


def render_instructions(
    version: PromptVersion | None, *, call: object = None, conversation: dict | None = None
) -> Instructions:
    """The instructions a turn sends: the version's text, rendered with the call's values, else
    the conversation's, else the defaults (``app/templating.py``). A version that is not a
    template is sent as it is, and refuses any call value. No version: the default prompt."""
    given = check_variables(version, call)
    if version is None:
        return Instructions(DEFAULT_SYSTEM_PROMPT, None)
    if not version.templated:
        return Instructions(version.content, None)
    declared = templating.loaded(version.variables)
    try:
        values = templating.resolve(declared, call=given, conversation=conversation)
        return Instructions(templating.render(version.content, values), values)
    except templating.VariableProblems as exc:
        raise variables_invalid(exc) from None


@dataclass(frozen=True)
class Settings:
    """A version's model settings, validated."""

    model: str
    temperature: float | None
    max_output_tokens: int
    output_format: str = "text"  # app/formats.py
    output_schema: dict | None = None

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "temperature": self.temperature,
            "max_output_tokens": self.max_output_tokens,
            "output_format": self.output_format,
            "output_schema": self.output_schema,
        }


def default_settings() -> Settings:
    """What a project without a saved version serves, and what a first version starts from."""
    return Settings(catalog.default_name(), None, current_app.config["LLM_MAX_OUTPUT_TOKENS"])


def settings_of(version: PromptVersion | None) -> Settings:
    if version is None:
        return default_settings()
    return Settings(
        version.model,
        version.temperature,
        version.max_output_tokens,
        version.output_format,
        version.output_schema,
    )


def clean_settings(
    model: object, temperature: object, max_output_tokens: object, *, base: Settings
) -> Settings:
    """Validate the settings a save asks for; ``None`` for model or max tokens keeps ``base``'s.
    ``temperature`` is taken as given (None: the provider's default)."""
    errors: dict[str, str] = {}
    if model is None:
        model = base.model
    elif catalog.listed_name(model) is None:
        errors["model"] = catalog.not_offered()
    else:
        model = catalog.listed_name(model)
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            errors["temperature"] = "Give a number from 0 to 2, or leave it empty."
        elif not 0 <= temperature <= TEMPERATURE_MAX:
            errors["temperature"] = "Use a temperature from 0 to 2."
        else:
            temperature = round(float(temperature), 2)
    cap = current_app.config["LLM_MAX_OUTPUT_TOKENS"]
    if max_output_tokens is None:
        max_output_tokens = min(base.max_output_tokens, cap)
    elif isinstance(max_output_tokens, bool) or not isinstance(max_output_tokens, int):
        errors["max_output_tokens"] = "Give a whole number of tokens."
    elif not MIN_OUTPUT_TOKENS <= max_output_tokens <= cap:
        errors["max_output_tokens"] = (
            f"Use from {MIN_OUTPUT_TOKENS} to {cap:,} tokens (the server's LLM_MAX_OUTPUT_TOKENS)."
        )
    if errors:
        raise ValidationFailed(fields=errors)
    return Settings(model, temperature, max_output_tokens)  # type: ignore[arg-type]


def find_version(project_id: int, number: int) -> PromptVersion | None:
    """Version ``number`` of a project (the caller has checked ownership), or None."""
    return db.session.scalar(
        select(PromptVersion).where(
            PromptVersion.project_id == project_id, PromptVersion.version == number
        )
    )


def existing_version(project: Project, number: int) -> PromptVersion:
    """Version ``number`` of ``project`` (ownership checked by the caller); a 422 on
    ``version`` when the project has none by that number."""
    found = find_version(project.id, number)
    if found is None:
        raise ValidationFailed(
            f"This project has no version {number}.",
            fields={"version": "Choose one of this project's versions."},
        )
    return found


def active_version(project: Project) -> PromptVersion | None:
    return version_by_id(project.active_prompt_id)


def candidate_version(project: Project) -> PromptVersion | None:
    return version_by_id(project.candidate_prompt_id)


def version_by_id(version_id: int | None) -> PromptVersion | None:
    """A version by id (the caller has checked ownership), from this process's cache when it
    is there: no statement on a hit.

    The cache cannot go stale: a version is never changed once saved (new text or settings
    make a new version), and which version a project serves is its pointer, read with the
    project on every turn, so promoting, rolling back or editing simply names another id. It is
    per app and per process, bounded (``PROMPT_CACHE_SIZE`` versions, least recently used
    dropped; 0 turns it off), and holds column values, never a session's instance. It is off
    on SQLite, which gives a new row the id of a deleted one when that was the highest (delete
    the newest project, make another: its first version could take an id another process
    still has cached); PostgreSQL's sequences never hand out an id twice."""
    if version_id is None:
        return None
    session = db.session()
    held = session.identity_map.get(identity_key(PromptVersion, version_id))
    if held is not None:
        return held
    cache = _cache()
    values = cache.get(version_id) if cache is not None else None
    if values is None:
        version = session.get(PromptVersion, version_id)
        if version is not None and cache is not None:
            cache.put(version_id, {key: getattr(version, key) for key in _COLUMNS})
        return version
    version = PromptVersion(**values)
    make_transient_to_detached(version)  # as if loaded: clean, with its identity
    session.add(version)
    return version


_COLUMNS = tuple(column.key for column in inspect(PromptVersion).column_attrs)


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[int, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: int) -> dict | None:
        with self._lock:
            values = self._items.get(key)
            if values is not None:
                self._items.move_to_end(key)
            return values

    def put(self, key: int, values: dict) -> None:
        with self._lock:
            self._items[key] = values
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def _cache() -> _LRU | None:
    cache = current_app.extensions.get("prompt_versions")
    if cache is None:
        size = current_app.config["PROMPT_CACHE_SIZE"]
        reuses_ids = db.engine.dialect.name == "sqlite"
        cache = current_app.extensions.setdefault(
            "prompt_versions", _LRU(size) if size > 0 and not reuses_ids else False
        )
    return cache or None


def canary_bucket(conversation_id: int, candidate_id: int) -> int:
    """0-99, fixed for a conversation and a candidate: the canary sends a new conversation to
    the candidate when its bucket is below the canary share. A hash (not a random draw) so the
    split can be recomputed and checked, and differs from one candidate to the next."""
    digest = hashlib.sha256(f"{conversation_id}:{candidate_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def add_version(
    project: Project,
    *,
    author: User | None,
    content: str,
    note: str | None,
    activate: bool,
    settings: Settings | None = None,
    template: Template | None = None,
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
    settings = settings or default_settings()
    template = template or Template(False, [])
    version = PromptVersion(
        project_id=project.id,
        version=next_number,
        content=content,
        note=note,
        author_id=author.id if author else None,
        model=settings.model,
        temperature=settings.temperature,
        max_output_tokens=settings.max_output_tokens,
        variables=template.variables,
        templated=template.templated,
        output_format=settings.output_format,
        output_schema=settings.output_schema,
    )
    db.session.add(version)
    db.session.flush()
    if activate:
        point_at(project.id, version.id)
    return version


def point_at(project_id: int, version_id: int) -> None:
    """Make ``version_id`` production. One UPDATE: the switch is atomic, and there is only ever
    one pointer. A candidate that becomes production stops being the candidate (and its canary
    ends)."""
    db.session.execute(
        update(Project)
        .where(Project.id == project_id, Project.candidate_prompt_id == version_id)
        .values(candidate_prompt_id=None, canary_percent=0)
    )
    db.session.execute(
        update(Project)
        .where(Project.id == project_id)
        .values(active_prompt_id=version_id, updated_at=utcnow())
    )


def point_candidate_at(project_id: int, version_id: int | None) -> None:
    """Set (or clear, with None) the candidate. A new candidate starts without a canary."""
    db.session.execute(
        update(Project)
        .where(Project.id == project_id)
        .values(candidate_prompt_id=version_id, canary_percent=0, updated_at=utcnow())
    )
