"""JSON file API under ``/api/projects/<id>/files``."""

from __future__ import annotations

from flask import Blueprint, request
from flask_login import current_user

from app.api import field, json_body
from app.edge import refuse_unknown_fields, takes_uploads
from app.errors import ValidationFailed
from app.files import services
from app.files.serializers import download_response, file_json, files_list_json
from app.limits import upload_per_user
from app.projects.services import get_project_for

bp = Blueprint("files", __name__, url_prefix="/<int:project_id>/files")


@bp.get("")
def list_(project_id: int):
    return files_list_json(current_user, project_id)


@bp.post("")
@takes_uploads
@upload_per_user  # one file per request, counted before the body is read
def upload(project_id: int):
    project = get_project_for(current_user, project_id)  # before the body is parsed
    refuse_unknown_fields("file")
    uploads = request.files.getlist("file")
    if len(uploads) != 1:
        raise ValidationFailed(
            "Send exactly one file, in the multipart field `file`.",
            fields={"file": "Send exactly one file in this field."},
        )
    result = services.store_upload(project, filename=uploads[0].filename, stream=uploads[0].stream)
    body = file_json(result.file)
    body["duplicate"] = not result.created
    return body, 201 if result.created else 200


@bp.get("/<int:file_id>")
def get(project_id: int, file_id: int):
    return file_json(services.get_file_for(current_user, project_id, file_id))


@bp.get("/<int:file_id>/download")
def download(project_id: int, file_id: int):
    return download_response(services.get_file_for(current_user, project_id, file_id))


@bp.patch("/<int:file_id>")
def update(project_id: int, file_id: int):
    services.get_file_for(current_user, project_id, file_id)  # ownership before validation
    use = field(json_body(), "use_in_chat", kind=bool, required=True)
    file = services.set_use_in_chat(
        user=current_user, project_id=project_id, file_id=file_id, use=use
    )
    return file_json(file)


@bp.post("/<int:file_id>/sync")
@upload_per_user  # a copy to OpenAI is an upload too: one file of the same budget
def sync(project_id: int, file_id: int):
    file = services.retry_sync(user=current_user, project_id=project_id, file_id=file_id)
    return file_json(file)


@bp.delete("/<int:file_id>")
def delete(project_id: int, file_id: int):
    services.delete_file(user=current_user, project_id=project_id, file_id=file_id)
    return "", 204
