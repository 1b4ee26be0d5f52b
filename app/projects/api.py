"""JSON project API: list, create, read, update, delete."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user

from app.api import body
from app.apimodels import operation
from app.projects import services
from app.projects.schemas import (
    Project,
    ProjectCreate,
    ProjectDetail,
    ProjectList,
    ProjectUpdate,
)

bp = Blueprint("projects", __name__, url_prefix="/projects")


@bp.get("")
@operation(
    "listProjects",
    "Your projects",
    tag="projects",
    description="Most recently updated first.",
    responses={200: ("The projects.", ProjectList)},
)
def list_():
    found = services.list_projects(user=current_user)
    return ProjectList(data=[Project.read(p) for p in found]).as_json()


@bp.post("")
@operation(
    "createProject",
    "Create a project",
    tag="projects",
    description="Names: at most 120 characters after trimming, not blank; descriptions at most "
    "2000. A non-blank `system_prompt` becomes prompt version 1, active.",
    body=ProjectCreate,
    responses={201: ("The project.", ProjectDetail)},
)
def create():
    data = body()
    project = services.create_project(
        user=current_user,
        name=data.name,
        description=data.description,
        system_prompt=data.system_prompt,
    )
    return ProjectDetail.of(project), 201


@bp.get("/<int:project_id>")
@operation(
    "getProject",
    "A project, with its active prompt",
    tag="projects",
    responses={200: ("The project.", ProjectDetail)},
)
def get(project_id: int):
    return ProjectDetail.of(services.get_project_for(current_user, project_id))


@bp.patch("/<int:project_id>")
@operation(
    "updateProject",
    "Rename or describe a project, or edit its system prompt",
    tag="projects",
    description="Absent or null fields are left as they are. A `system_prompt` that differs "
    "from the active version's text is saved as a new version and made active, with the active "
    'version\'s model settings and the note "Edited with the project"; the same text saves '
    "nothing. (The prompts API offers the rest: notes, settings, candidates.)",
    body=ProjectUpdate,
    responses={200: ("The project.", ProjectDetail)},
)
def update(project_id: int):
    data = body()
    project = services.update_project(
        user=current_user,
        project_id=project_id,
        name=data.name,
        description=data.description,
        system_prompt=data.system_prompt,
    )
    return ProjectDetail.of(project)


@bp.delete("/<int:project_id>")
@operation(
    "deleteProject",
    "Delete a project",
    tag="projects",
    description="With its prompt versions, conversations and files.",
    responses={204: "Deleted."},
)
def delete(project_id: int):
    services.delete_project(user=current_user, project_id=project_id)
    return "", 204
