"""JSON prompt-version API under ``/api/projects/<id>/prompts``: versions with their model
settings, the candidate, the canary, rollback, and per-version metrics."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, request
from flask_login import current_user

from app import catalog
from app.api import field, json_body
from app.prompts import services
from app.prompts.metrics import Metrics
from app.prompts.serializers import version_json

bp = Blueprint("prompts", __name__, url_prefix="/<int:project_id>/prompts")
models_bp = Blueprint("models", __name__)


@models_bp.get("/models")
def models():
    """The models a version may choose, first the default, with their provider ids and prices."""
    default = catalog.default_name()
    return {
        "data": [
            {
                "name": c.name,
                "openai": c.openai,
                "openrouter": c.openrouter,
                "input_per_million": c.input_per_million,
                "output_per_million": c.output_per_million,
                "default": c.name == default,
            }
            for c in catalog.choices()
        ]
    }


def release_json(project) -> dict:
    """Which version serves (production), which is being tried (candidate), the canary share."""
    active, candidate = services.release_of(project)
    return {
        "production": version_json(active) if active else None,
        "candidate": version_json(candidate) if candidate else None,
        "canary_percent": project.canary_percent,
    }


def _temperature(data: dict) -> object:
    """Absent: keep the base version's; null: the provider's default; else a number."""
    return data["temperature"] if "temperature" in data else services.KEEP


@bp.post("")
def create(project_id: int):
    data = json_body()
    activate = field(data, "activate", kind=bool)
    candidate = bool(field(data, "candidate", kind=bool))
    result = services.create_version(
        user=current_user,
        project_id=project_id,
        content=field(data, "content"),
        note=field(data, "note"),
        activate=(not candidate) if activate is None else activate,
        candidate=candidate,
        model=field(data, "model"),
        temperature=_temperature(data),
        max_output_tokens=field(data, "max_output_tokens", kind=int),
    )
    body = version_json(result.version)
    body["created"] = result.created
    return body, 201 if result.created else 200


@bp.get("")
def list_(project_id: int):
    _, versions = services.list_versions(user=current_user, project_id=project_id)
    return {"data": [version_json(v) for v in versions]}


@bp.get("/<int:version>")
def get(project_id: int, version: int):
    found = services.get_version(user=current_user, project_id=project_id, number=version)
    return version_json(found)


@bp.post("/<int:version>/activate")
def activate(project_id: int, version: int):
    found = services.activate_version(user=current_user, project_id=project_id, number=version)
    return version_json(found)


@bp.post("/<int:version>/candidate")
def make_candidate(project_id: int, version: int):
    found = services.make_candidate(user=current_user, project_id=project_id, number=version)
    return release_json(found.project)


@bp.get("/release")
def release(project_id: int):
    return release_json(services.get_release(user=current_user, project_id=project_id))


@bp.put("/canary")
def canary(project_id: int):
    # The value is checked by the service, after ownership (another user's project: 404).
    percent = json_body().get("percent")
    project = services.set_canary(user=current_user, project_id=project_id, percent=percent)
    return release_json(project)


@bp.post("/candidate/promote")
def promote(project_id: int):
    found = services.promote_candidate(user=current_user, project_id=project_id)
    return release_json(found.project)


@bp.delete("/candidate")
def discard(project_id: int):
    return release_json(services.discard_candidate(user=current_user, project_id=project_id))


@bp.get("/diff")
def diff(project_id: int):
    result = services.diff_versions(
        user=current_user,
        project_id=project_id,
        from_number=request.args.get("from"),
        to_number=request.args.get("to"),
    )
    return {
        "from": result.a,
        "to": result.b,
        "diff": result.text,
        "settings": [{"name": c.name, "from": c.old, "to": c.new} for c in result.settings_changes],
    }


def metrics_json(result: Metrics) -> dict:
    return {
        "window": result.window,
        "since": result.since.isoformat() if result.since else None,
        "bucket_seconds": result.bucket_seconds,
        "buckets": [start.isoformat() for start in result.buckets],
        "data": [
            {
                "version": row.version.version,
                "is_active": row.is_active,
                "is_candidate": row.is_candidate,
                "model": row.version.model,
                **asdict(row.figures),
                "series": row.series,
            }
            for row in result.versions
        ],
    }


@bp.get("/metrics")
def metrics(project_id: int):
    result = services.metrics_for(
        user=current_user, project_id=project_id, window=request.args.get("window")
    )
    return metrics_json(result)
