"""JSON prompt-version API under ``/api/projects/<id>/prompts``: versions with their model
settings, the candidate, the canary, rollback, and per-version metrics."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint
from flask_login import current_user

from app import catalog
from app.api import args, body
from app.apimodels import operation
from app.limits import labels_per_user
from app.prompts import labels, services
from app.prompts.metrics import Metrics
from app.prompts.schemas import (
    Canary,
    DiffQuery,
    Label,
    LabelCreate,
    LabelList,
    LabelMove,
    MetricsQuery,
    ModelChoice,
    ModelList,
    PromptDiff,
    PromptMetrics,
    PromptVersion,
    PromptVersionList,
    PromptVersionSaved,
    Release,
    SettingChange,
    VersionCreate,
    VersionMetrics,
)

bp = Blueprint("prompts", __name__, url_prefix="/<int:project_id>/prompts")
models_bp = Blueprint("models", __name__)

_RELEASE = {200: ("The release.", Release)}


@models_bp.get("/models")
@operation(
    "listModels",
    "Models a prompt version may use",
    tag="prompts",
    description="The server's allowlist (`MODELS`), the default first.",
    responses={200: ("The models.", ModelList)},
)
def models():
    """The models a version may choose, first the default, with their provider ids and prices."""
    default = catalog.default_name()
    return ModelList(
        data=[ModelChoice.read(c, default=c.name == default) for c in catalog.choices()]
    ).as_json()


def release_json(project) -> dict:
    """Which version serves (production), which is being tried (candidate), the canary share."""
    active, candidate = services.release_of(project)
    return Release(
        production=PromptVersion.read(active) if active else None,
        candidate=PromptVersion.read(candidate) if candidate else None,
        canary_percent=project.canary_percent,
    ).as_json()


@bp.post("")
@operation(
    "createPromptVersion",
    "Save a prompt version",
    tag="prompts",
    description="Stores version N+1: the text with its model settings. By default it becomes "
    "production (`activate`); with `candidate: true` it becomes the candidate instead (tried in "
    "pinned chats, compared, given a canary share, then promoted); with `activate: false` it "
    "only joins the history. Settings left out are kept from the version saved over "
    "(`temperature: null` means the provider's default). Text and settings equal to that "
    "version store nothing (200, `created: false`). At most `PROMPT_MAX_CHARS` after trimming; "
    "notes 200; `model` from `GET /api/models`; `temperature` 0-2; `max_output_tokens` 16 to "
    "the server's `LLM_MAX_OUTPUT_TOKENS`; `output_format` `text`, `json_object` or "
    "`json_schema` with `output_schema` a valid JSON Schema (Draft 2020-12) of at most 32 KB "
    "and 32 levels (else 422 on `output_schema`).",
    body=VersionCreate,
    responses={
        201: ("The new version.", PromptVersionSaved),
        200: ("Unchanged: the version saved over.", PromptVersionSaved),
        409: "Saved concurrently too often; try again.",
    },
)
def create(project_id: int):
    data = body()
    candidate = bool(data.candidate)
    result = services.create_version(
        user=current_user,
        project_id=project_id,
        content=data.content,
        note=data.note,
        activate=(not candidate) if data.activate is None else data.activate,
        candidate=candidate,
        model=data.model,
        # Absent: keep the base version's; null: the provider's default; else a number.
        temperature=data.temperature if data.given("temperature") else services.KEEP,
        max_output_tokens=data.max_output_tokens,
        variables=data.variables if data.given("variables") else services.KEEP,
        output_format=data.output_format,
        output_schema=data.output_schema,
    )
    saved = PromptVersionSaved.read(result.version, created=result.created)
    return saved.as_json(), 201 if result.created else 200


@bp.get("")
@operation(
    "listPromptVersions",
    "Prompt versions",
    tag="prompts",
    description="Newest first.",
    responses={200: ("The versions.", PromptVersionList)},
)
def list_(project_id: int):
    _, versions = services.list_versions(user=current_user, project_id=project_id)
    return PromptVersionList(data=[PromptVersion.read(v) for v in versions]).as_json()


@bp.get("/<int:version>")
@operation(
    "getPromptVersion",
    "A prompt version",
    tag="prompts",
    responses={200: ("The version.", PromptVersion)},
)
def get(project_id: int, version: int):
    found = services.get_version(user=current_user, project_id=project_id, number=version)
    return PromptVersion.of(found)


@bp.post("/<int:version>/activate")
@operation(
    "activatePromptVersion",
    "Make a version active (rollback)",
    tag="prompts",
    description="Moves the project's pointer; nothing is renumbered.",
    responses={200: ("The now active version.", PromptVersion)},
)
def activate(project_id: int, version: int):
    found = services.activate_version(user=current_user, project_id=project_id, number=version)
    return PromptVersion.of(found)


@bp.post("/<int:version>/candidate")
@operation(
    "makeCandidate",
    "Make a version the candidate",
    tag="prompts",
    description="Replaces any other candidate; the canary share starts at 0. Production itself "
    "cannot be the candidate (422).",
    responses={**_RELEASE, 422: "The version is production already."},
)
def make_candidate(project_id: int, version: int):
    found = services.make_candidate(user=current_user, project_id=project_id, number=version)
    return release_json(found.project)


@bp.get("/release")
@operation(
    "getRelease",
    "Production, candidate and canary",
    tag="prompts",
    responses={200: ("What serves and what is being tried.", Release)},
)
def release(project_id: int):
    return release_json(services.get_release(user=current_user, project_id=project_id))


@bp.put("/canary")
@operation(
    "setCanary",
    "Send a share of new conversations to the candidate",
    tag="prompts",
    description="`percent` (0-100) of new, unpinned conversations are served by the candidate; "
    "the choice is made once per conversation (a hash of its id) and kept. 0 ends the canary. "
    "Needs a candidate.",
    body=Canary,
    responses=_RELEASE,
)
def canary(project_id: int):
    # The value is checked by the service, after ownership (another user's project: 404).
    percent = body().percent
    project = services.set_canary(user=current_user, project_id=project_id, percent=percent)
    return release_json(project)


@bp.post("/candidate/promote")
@operation(
    "promoteCandidate",
    "Promote the candidate to production",
    tag="prompts",
    description="The candidate becomes the active version; the canary ends.",
    responses={**_RELEASE, 409: "There is no candidate."},
)
def promote(project_id: int):
    found = services.promote_candidate(user=current_user, project_id=project_id)
    return release_json(found.project)


@bp.delete("/candidate")
@operation(
    "discardCandidate",
    "Discard the candidate",
    tag="prompts",
    description="Ends the trial and the canary. The version stays in the history; "
    "conversations the canary gave it keep it.",
    responses=_RELEASE,
)
def discard(project_id: int):
    return release_json(services.discard_candidate(user=current_user, project_id=project_id))


@bp.get("/diff")
@operation(
    "diffPromptVersions",
    "Compare two versions",
    tag="prompts",
    query=DiffQuery,
    responses={
        200: ("A unified line diff.", PromptDiff),
        422: "`from` or `to` is not a version number.",
    },
)
def diff(project_id: int):
    query = args()
    result = services.diff_versions(
        user=current_user, project_id=project_id, from_number=query.from_, to_number=query.to
    )
    return PromptDiff(
        from_=result.a,
        to=result.b,
        diff=result.text,
        settings=[
            SettingChange(name=c.name, label=c.label, from_=c.old, to=c.new)
            for c in result.settings_changes
        ],
    ).as_json()


def metrics_json(result: Metrics) -> dict:
    return PromptMetrics(
        window=result.window,
        source=result.source,
        since=result.since,
        bucket_seconds=result.bucket_seconds,
        buckets=result.buckets,
        data=[
            VersionMetrics(
                version=row.version.version,
                is_active=row.is_active,
                is_candidate=row.is_candidate,
                model=row.version.model,
                **asdict(row.figures),
                series=row.series,
            )
            for row in result.versions
        ],
    ).as_json()


@bp.get("/metrics")
@operation(
    "getPromptMetrics",
    "Per-version metrics from real traffic",
    tag="prompts",
    description="For each version with replies in the window (production and the candidate "
    "always, first): replies, 👍 rate, error and fallback rates, median time to first token and "
    "total time, mean tokens, estimated cost, and each as a series over time. SQL aggregates "
    "over the stored replies.",
    query=MetricsQuery,
    responses={
        200: ("The metrics.", PromptMetrics),
        422: "`window` is not `24h`, `7d` or `all`, or `source` not `all`, `chat`, `api` or "
        "`share`.",
    },
)
def metrics(project_id: int):
    query = args()
    result = services.metrics_for(
        user=current_user, project_id=project_id, window=query.window, source=query.source
    )
    return metrics_json(result)


@bp.get("/labels")
@operation(
    "listPromptLabels",
    "Labels and the versions they point at",
    tag="prompts",
    description="The built-in `production` and `candidate` (the release's pointers), then the "
    "project's named labels by name. Chats, pinned chats and Compare may ask for a version by "
    "any of them (`label`).",
    responses={200: ("The labels.", LabelList)},
)
def list_labels(project_id: int):
    _, found = labels.list_labels(user=current_user, project_id=project_id)
    return LabelList(data=[Label.of_label(label) for label in found]).as_json()


@bp.post("/labels")
@operation(
    "createPromptLabel",
    "Label a version",
    tag="prompts",
    rate_limited=True,
    description="A new named label (`staging`, `eu` …) pointing at a version of the project. "
    "Names: lowercase letters, digits, - and _, at most 40; `production` and `candidate` are "
    "built in (422); at most 50 labels per project. Counts against `RATELIMIT_LABELS`.",
    body=LabelCreate,
    responses={
        201: ("The label.", Label),
        409: "The project has a label by this name already (move it instead).",
        422: "A bad or built-in `name`; a `version` the project does not have.",
    },
)
@labels_per_user
def create_label(project_id: int):
    data = body()
    made = labels.create_label(
        user=current_user, project_id=project_id, name=data.name, version=data.version
    )
    return Label.of_label(made).as_json(), 201


@bp.put("/labels/<label>")
@operation(
    "movePromptLabel",
    "Move a label to another version",
    tag="prompts",
    rate_limited=True,
    description="Points the label at `version`. The built-in two move with the release "
    "(promote, rollback, candidate): 422 here. Counts against `RATELIMIT_LABELS`.",
    body=LabelMove,
    responses={
        200: ("The label.", Label),
        422: "A built-in label; a `version` the project does not have.",
    },
)
@labels_per_user
def move_label(project_id: int, label: str):
    data = body()
    moved = labels.move_label(
        user=current_user, project_id=project_id, name=label, version=data.version
    )
    return Label.of_label(moved).as_json()


@bp.delete("/labels/<label>")
@operation(
    "deletePromptLabel",
    "Delete a label",
    tag="prompts",
    rate_limited=True,
    description="The version stays; conversations pinned through the label keep it. Counts "
    "against `RATELIMIT_LABELS`.",
    responses={204: "Deleted.", 422: "A built-in label."},
)
@labels_per_user
def delete_label(project_id: int, label: str):
    labels.delete_label(user=current_user, project_id=project_id, name=label)
    return "", 204
