"""JSON file API under ``/api/projects/<id>/files``."""

from __future__ import annotations

from flask import Blueprint, request, send_file, url_for
from flask_login import current_user

from app.api import field, json_body
from app.edge import takes_uploads
from app.errors import ValidationFailed
from app.files import services
from app.limits import upload_per_user
from app.projects.services import get_project_for

bp = Blueprint("files", __name__, url_prefix="/<int:project_id>/files")


def file_json(file) -> dict:
    return {
        "id": file.id,
        "project_id": file.project_id,
        "name": file.name,
        "size": file.size,
        "content_type": file.content_type,
        "sha256": file.sha256,
        "created_at": file.created_at.isoformat(),
        "text": {
            "status": file.text_status,
            "chars": file.text_chars,
            "pages": file.text_pages,
            "note": file.text_note,
        },
        "use_in_chat": file.use_in_chat,
        "openai": {
            "status": file.sync_status,
            "file_id": file.openai_file_id,
            "error": file.sync_error,
            "file": openai_file_json(file),
        },
        "download_url": url_for("files.download", project_id=file.project_id, filename=file.name),
    }


def openai_file_json(file) -> dict | None:
    """OpenAI's file object for the copy, as OpenAI answered the upload; None without a copy."""
    if not file.openai_file_id:
        return None
    return {
        "id": file.openai_file_id,
        "bytes": file.openai_bytes,
        "created_at": file.openai_created_at,
        "expires_at": file.openai_expires_at,
        "purpose": file.openai_purpose,
        "status": file.openai_status,
    }


def download_response(file):
    """The bytes as an attachment with their stored type: an uploaded HTML or SVG file is
    saved by the browser, never rendered in our origin."""
    resp = send_file(
        services.file_path(file),
        mimetype=file.content_type,
        as_attachment=True,
        download_name=file.name,
        max_age=0,
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return resp


@bp.get("")
def list_(project_id: int):
    files = services.list_files(user=current_user, project_id=project_id)
    return {"data": [file_json(f) for f in files]}


@bp.post("")
@takes_uploads
@upload_per_user
def upload(project_id: int):
    project = get_project_for(current_user, project_id)  # before the body is parsed
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
def sync(project_id: int, file_id: int):
    file = services.retry_sync(user=current_user, project_id=project_id, file_id=file_id)
    return file_json(file)


@bp.delete("/<int:file_id>")
def delete(project_id: int, file_id: int):
    services.delete_file(user=current_user, project_id=project_id, file_id=file_id)
    return "", 204
