"""JSON prompt-version API under ``/api/projects/<id>/prompts``."""

from __future__ import annotations

from flask import Blueprint, request
from flask_login import current_user

from app.api import field, json_body
from app.prompts import services

bp = Blueprint("prompts", __name__, url_prefix="/<int:project_id>/prompts")


def version_json(version) -> dict:
    return {
        "id": version.id,
        "project_id": version.project_id,
        "version": version.version,
        "content": version.content,
        "note": version.note,
        "is_active": version.is_active,
        "author_id": version.author_id,
        "length": len(version.content),
        "created_at": version.created_at.isoformat(),
    }


@bp.post("")
def create(project_id: int):
    data = json_body()
    activate = field(data, "activate", kind=bool)
    result = services.create_version(
        user=current_user,
        project_id=project_id,
        content=field(data, "content"),
        note=field(data, "note"),
        activate=True if activate is None else activate,
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


@bp.get("/diff")
def diff(project_id: int):
    a, b, text = services.diff_versions(
        user=current_user,
        project_id=project_id,
        from_number=request.args.get("from"),
        to_number=request.args.get("to"),
    )
    return {"from": a, "to": b, "diff": text}
