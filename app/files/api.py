"""JSON file API under ``/api/projects/<id>/files``."""

from __future__ import annotations

from flask import Blueprint, request
from flask_login import current_user

from app.api import body
from app.apimodels import Reply, operation, retry_after
from app.edge import refuse_unknown_fields, takes_uploads
from app.errors import ValidationFailed
from app.files import services
from app.files.schemas import File, FileList, FileUpdate, FileUploaded
from app.files.serializers import download_response, files_list
from app.limits import upload_per_user
from app.projects.services import get_project_for

bp = Blueprint("files", __name__, url_prefix="/<int:project_id>/files")

_FILE = {200: ("The file.", File)}
_UPLOAD = (
    "Multipart, exactly one file in the field `file` and no other field but a form's `csrf_token` "
    "(another one, `files` included, is a 422 naming it), at most `MAX_UPLOAD_MB` (20 MB). The type"
    " comes from the name's extension, which `UPLOAD_ALLOWED_EXTENSIONS` must allow. A built-in "
    "type must match its bytes (a `.png` must be a PNG, text must be UTF-8); a type the operator "
    "added (`.docx`, `.zip`, …) is kept as it is, as `application/octet-stream`, without text. The "
    "same bytes twice are stored once; a taken name becomes `name (2).ext`. With `OPENAI_API_KEY` "
    "set the file is also copied to OpenAI Files by a background job: the answer has "
    "`openai.status` `pending`, then the file reads `synced`, or `failed` with the reason. Each "
    "file counts against `RATELIMIT_UPLOAD` (files per "
    "user, shared with the Files page and copy retries), and must fit the storage quotas "
    "(`STORAGE_QUOTA_*`; new bytes only: the same bytes again cost nothing); a refused file is "
    "neither stored nor copied."
)
_MULTIPART = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "contentMediaType": "application/octet-stream"}
            },
            "additionalProperties": False,
        },
        "encoding": {
            "file": {
                "headers": {
                    "Content-Disposition": {
                        "description": "The filename's extension gives the type.",
                        "schema": {"type": "string"},
                        "example": 'form-data; name="file"; filename="notes.txt"',
                    }
                }
            }
        },
    }
}
_DOWNLOAD = Reply(
    "The bytes, as an attachment with their stored content type.",
    headers={
        "Content-Disposition": {
            "required": True,
            "schema": {"type": "string", "pattern": "^attachment"},
        }
    },
    content={"*/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}},
)


def _storage_503(doing: str) -> Reply:
    """503 of an operation that needs the file store as well as the database."""
    return Reply(
        "`database_unavailable`: the database cannot be reached for a moment; or "
        f"`storage_unavailable`: the file store (S3) cannot be reached, so {doing}. Nothing was "
        "done. Try again after `Retry-After` seconds.",
        error=True,
        headers=retry_after("Seconds to wait before trying again."),
    )


@bp.get("")
@operation(
    "listFiles",
    "A project's files",
    tag="files",
    description="Newest first, with the storage they take against the quotas.",
    responses={200: ("The files.", FileList)},
)
def list_(project_id: int):
    return files_list(current_user, project_id)


@bp.post("")
@operation(
    "uploadFile",
    "Upload a file",
    tag="files",
    rate_limited=True,
    description=_UPLOAD,
    body_content=_MULTIPART,
    responses={
        503: _storage_503("nothing was stored and no file row was made"),
        201: ("Stored.", FileUploaded),
        200: ("These bytes were already there.", FileUploaded),
        409: "Too many files share this name.",
        413: "`payload_too_large` / `file_too_large`: over the limit; `storage_quota_exceeded`: "
        "the file would cross a storage quota, named in `quota` (nothing was stored).",
        415: "`file_type_not_allowed`: the type is not allowed, or the bytes do not match a "
        "built-in type's extension.",
        422: "Not exactly one file in `file`, or another field (`validation_failed`, naming it in "
        "`fields`), or an empty file (`file_empty`).",
    },
)
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
    body_ = FileUploaded.read(result.file, duplicate=not result.created)
    return body_.as_json(), 201 if result.created else 200


@bp.get("/<int:file_id>")
@operation("getFile", "A file", tag="files", responses=_FILE)
def get(project_id: int, file_id: int):
    return File.of(services.get_file_for(current_user, project_id, file_id))


@bp.get("/<int:file_id>/download")
@operation(
    "downloadFile",
    "Download a file",
    tag="files",
    description="Streamed from the store. `ETag` is the content's sha256; `If-None-Match` and "
    "`If-Modified-Since` answer 304, and one `Range` answers 206 with `Content-Range`.",
    responses={
        200: _DOWNLOAD,
        404: "`not_found`: no such file (or another user's); or `file_bytes_missing`: the file "
        'is listed but its stored bytes are gone from the store ("The stored bytes of X are '
        'missing."; logged on the server).',
        503: _storage_503("the bytes could not be read"),
    },
)
def download(project_id: int, file_id: int):
    return download_response(services.get_file_for(current_user, project_id, file_id))


@bp.patch("/<int:file_id>")
@operation(
    "updateFile",
    "Use a file in chat, or stop",
    tag="files",
    description="Only files with extracted text (`text.status` `ok`) can be used; others "
    "(images, added types, …) answer 422 `file_has_no_text`.",
    body=FileUpdate,
    responses={**_FILE, 422: "`use_in_chat` missing, or `file_has_no_text`."},
)
def update(project_id: int, file_id: int):
    services.get_file_for(current_user, project_id, file_id)  # ownership before validation
    use = body().use_in_chat
    file = services.set_use_in_chat(
        user=current_user, project_id=project_id, file_id=file_id, use=use
    )
    return File.of(file)


@bp.post("/<int:file_id>/sync")
@operation(
    "syncFile",
    "Retry the OpenAI Files copy",
    tag="files",
    rate_limited=True,
    description="Queues the copy of a `local` or `failed` file (a background job) and answers "
    "the file, `openai.status` `pending`; read the file again for the outcome. A synced or "
    "pending file is returned as it is. OpenAI's failure is stored on the file (`openai.status` "
    "`failed`), not answered as an error. Each call counts as one file against "
    "`RATELIMIT_UPLOAD`.",
    responses={**_FILE, 409: "`sync_unavailable`: no `OPENAI_API_KEY` is set."},
)
@upload_per_user  # a copy to OpenAI is an upload too: one file of the same budget
def sync(project_id: int, file_id: int):
    file = services.retry_sync(user=current_user, project_id=project_id, file_id=file_id)
    return File.of(file)


@bp.delete("/<int:file_id>")
@operation(
    "deleteFile",
    "Delete a file",
    tag="files",
    description="The bytes, the row and the OpenAI copy.",
    responses={204: "Deleted.", 503: _storage_503("the file was not deleted")},
)
def delete(project_id: int, file_id: int):
    services.delete_file(user=current_user, project_id=project_id, file_id=file_id)
    return "", 204
