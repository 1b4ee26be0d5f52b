"""How a stored file goes out: its JSON (the API and the Files tab's list) and its download
response. Shared by the page routes and the JSON API."""

from __future__ import annotations

from flask import request, send_file, url_for
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from app.files import services


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


def files_list_json(user, project_id: int) -> dict:
    """A project's files, newest first, and what the user's files take against the quotas."""
    files = services.list_files(user=user, project_id=project_id)
    usage = services.storage_usage(user=user, project_id=project_id)
    return {"data": [file_json(f) for f in files], "storage": storage_json(usage)}


def storage_json(usage) -> dict:
    limits = usage.quotas
    return {
        "project": {
            "bytes": usage.project.bytes,
            "files": usage.project.files,
            "max_bytes": limits.project_bytes,
            "max_files": limits.project_files,
        },
        "user": {
            "bytes": usage.user.bytes,
            "files": usage.user.files,
            "max_bytes": limits.user_bytes,
        },
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
    saved by the browser, never rendered in our origin.

    The same response for every store: the bytes stream from the store's reader (a local file,
    or an S3 object's body read in chunks), with ``Content-Length``, a strong ``ETag`` (the
    content's sha256, so it is the same on every store and machine), ``Last-Modified`` (the
    upload time), and Werkzeug's conditional handling: ``If-None-Match`` /
    ``If-Modified-Since`` give a 304, a single ``Range`` a 206 (S3: a ranged ``GetObject``
    from the start of the range)."""
    opened = services.open_bytes(file)
    try:
        resp = send_file(
            opened.file,
            mimetype=file.content_type,
            as_attachment=True,
            download_name=file.name,
            max_age=0,
            conditional=False,
            etag=file.sha256,
            last_modified=file.created_at,
        )
        resp.content_length = opened.size
        resp = resp.make_conditional(request, accept_ranges=True, complete_length=opened.size)
    except RequestedRangeNotSatisfiable:
        opened.file.close()
        raise
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return resp
