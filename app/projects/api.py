"""JSON project API: list, create, read, update, delete."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user

from app.api import field, json_body
from app.projects import services

bp = Blueprint("projects", __name__, url_prefix="/projects")


def project_json(project) -> dict:
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "created_at": project.created_at.isoformat(),
        "updated_at": project.updated_at.isoformat(),
    }


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
    )
    return project_json(project), 201


@bp.get("/<int:project_id>")
def get(project_id: int):
    return project_json(services.get_project_for(current_user, project_id))


@bp.patch("/<int:project_id>")
def update(project_id: int):
    data = json_body()
    project = services.update_project(
        user=current_user,
        project_id=project_id,
        name=field(data, "name"),
        description=field(data, "description"),
    )
    return project_json(project)


@bp.delete("/<int:project_id>")
def delete(project_id: int):
    services.delete_project(user=current_user, project_id=project_id)
    return "", 204
