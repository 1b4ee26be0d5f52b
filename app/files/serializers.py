"""How stored files go out: the list's JSON (the API and the Files tab; the shapes are in
``schemas.py``) and a file's download response. Shared by the page routes and the JSON API."""

from __future__ import annotations

from flask import request, send_file
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from app.files import services
from app.files.schemas import File, FileList, Storage


def files_list(user, project_id: int) -> dict:
    """A project's files, newest first, and what the user's files take against the quotas."""
    files = services.list_files(user=user, project_id=project_id)
    usage = services.storage_usage(user=user, project_id=project_id)
    return FileList(data=[File.read(f) for f in files], storage=Storage.read(usage)).as_json()


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
