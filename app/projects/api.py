"""JSON project API: list, create, read, update, delete."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user

from app.api import field, json_body
from app.projects import services
from app.prompts.serializers import version_json
from app.prompts.versions import DEFAULT_SYSTEM_PROMPT, active_version

bp = Blueprint("projects", __name__, url_prefix="/projects")


def project_json(project, *, with_prompt: bool = False) -> dict:
    data = {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "active_prompt_id": project.active_prompt_id,
        "created_at": project.created_at.isoformat(),
        "updated_at": project.updated_at.isoformat(),
    }
    if with_prompt:
        version = active_version(project)
        data["active_prompt"] = version_json(version) if version else None
        data["default_prompt"] = DEFAULT_SYSTEM_PROMPT if version is None else None
    return data


@bp.get("")
def list_():
    return {"data": [project_json(p) for p in services.list_projects(user=current_user)]}


@bp.post("")
def create():
    data = json_body()
    project = services.create_project(
        user=current_user,
        name=field(data, "name", required=True),
        description=field(data, "description"),
        system_prompt=field(data, "system_prompt"),
    )
    return project_json(project, with_prompt=True), 201


@bp.get("/<int:project_id>")
def get(project_id: int):
    return project_json(services.get_project_for(current_user, project_id), with_prompt=True)


@bp.patch("/<int:project_id>")
def update(project_id: int):
    data = json_body()
    project = services.update_project(
        user=current_user,
        project_id=project_id,
        name=field(data, "name"),
        description=field(data, "description"),
        system_prompt=field(data, "system_prompt"),
    )
    return project_json(project, with_prompt=True)


@bp.delete("/<int:project_id>")
def delete(project_id: int):
    services.delete_project(user=current_user, project_id=project_id)
    return "", 204
