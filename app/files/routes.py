"""File pages: the project's Files tab, form upload, download by name, delete, chat toggle."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_limiter import RateLimitExceeded
from flask_login import current_user, login_required

from app import llm
from app.edge import refuse_unknown_fields, takes_uploads
from app.errors import AppError, Conflict, ValidationFailed
from app.files import services
from app.files.quota import human_size
from app.files.serializers import download_response, files_list
from app.forms import ConfirmForm
from app.limits import (
    count_uploaded_file,
    upload_per_user,
    upload_retry_seconds,
    upload_room_per_user,
)
from app.models import SyncStatus
from app.projects.services import get_project_for

bp = Blueprint("files", __name__, url_prefix="/projects/<int:project_id>/files")
bp.add_app_template_filter(human_size, "storage_size")


@bp.before_request
@login_required
def require_login():
    return None


@bp.get("")
def index(project_id: int):
    """The Files tab for browsers; a JSON list (``{"data": [...]}``) for everyone else."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    if best != "text/html":
        return files_list(current_user, project_id)
    files = services.list_files(user=current_user, project_id=project_id)
    return render_template(
        "files/index.html",
        project=get_project_for(current_user, project_id),
        files=files,
        limit_mb=services.upload_limit_mb(),
        types=services.upload_types(),
        mirror=llm.openai_files().configured,
        confirm=ConfirmForm(),
        storage=services.storage_usage(user=current_user, project_id=project_id),
        max_files=current_app.config["UPLOAD_MAX_FILES_PER_REQUEST"],
    )


@bp.post("")
@takes_uploads
@upload_room_per_user
def upload(project_id: int):
    """Form upload of one or more files (the page's script uploads them one by one to the API,
    with progress; this is the same without JavaScript), at most UPLOAD_MAX_FILES_PER_REQUEST.

    Each file is one upload: counted against RATELIMIT_UPLOAD, checked against the quotas and
    stored or refused on its own, and its outcome flashed. So the files that fit are stored; at
    the rate limit the rest are named as not uploaded. A form with no file or too many stores
    nothing and costs one."""
    project = get_project_for(current_user, project_id)  # before the body is parsed
    try:
        refuse_unknown_fields("file")
    except ValidationFailed as exc:  # nothing stored: the form was not ours
        flash(exc.message, "error")
        return redirect(url_for("files.index", project_id=project_id))
    uploads = [u for u in request.files.getlist("file") if u.filename]
    refused = _form_refusal(len(uploads))
    if refused:
        count_uploaded_file()  # a form that stores nothing still costs one
        flash(refused, "error")
    for index, item in enumerate([] if refused else uploads):
        try:
            count_uploaded_file()
        except RateLimitExceeded:
            flash(_over_the_upload_limit(uploads[index:]), "error")
            break
        _store_one(project, item)
    return redirect(url_for("files.index", project_id=project_id))


def _form_refusal(count: int) -> str | None:
    most = current_app.config["UPLOAD_MAX_FILES_PER_REQUEST"]
    if not count:
        return "Choose at least one file to upload."
    if count > most:
        return (
            f"{count} files were chosen; up to {most} can be uploaded at once. "
            "Nothing was uploaded: choose fewer files."
        )
    return None


def _over_the_upload_limit(left, shown: int = 5) -> str:
    """Which files were not uploaded (the first few: a flash lives in the session cookie)."""
    names = ", ".join(u.filename or "" for u in left[:shown])
    if len(left) > shown:
        names += f" and {len(left) - shown} more"
    return (
        f"Not uploaded: {names}. You reached the upload limit "
        f"({current_app.config['RATELIMIT_UPLOAD']}, counted per file); "
        f"try again in {upload_retry_seconds()} seconds."
    )


def _store_one(project, item) -> None:
    """Store one file of the form and flash its outcome."""
    try:
        result = services.store_upload(project, filename=item.filename, stream=item.stream)
    except AppError as exc:
        flash(exc.message, "error")
    else:
        if result.created:
            flash(f"Uploaded {result.file.name}.", "success")
        else:
            flash(f"{item.filename} is already here, as {result.file.name}.", "info")


@bp.get("/<filename>")
def download(project_id: int, filename: str):
    return download_response(services.get_file_by_name_for(current_user, project_id, filename))


@bp.post("/<int:file_id>/chat")
def use_in_chat(project_id: int, file_id: int):
    use = request.form.get("use") == "1"
    try:
        file = services.set_use_in_chat(
            user=current_user, project_id=project_id, file_id=file_id, use=use
        )
    except ValidationFailed as exc:  # no text to use
        flash(exc.message, "error")
    else:
        state = "is used in chat" if file.use_in_chat else "is no longer used in chat"
        flash(f"{file.name} {state}.", "success")
    return redirect(url_for("files.index", project_id=project_id))


@bp.post("/<int:file_id>/sync")
@upload_per_user  # a copy to OpenAI is an upload too
def sync(project_id: int, file_id: int):
    try:
        file = services.retry_sync(user=current_user, project_id=project_id, file_id=file_id)
    except Conflict as exc:  # no OpenAI key configured
        flash(exc.message, "error")
    else:
        if file.sync_status == SyncStatus.SYNCED:
            flash(f"{file.name} is copied to OpenAI.", "success")
        elif file.sync_status == SyncStatus.PENDING:
            flash(f"Copying {file.name} to OpenAI…", "info")
        else:
            flash(f"The copy of {file.name} to OpenAI failed. {file.sync_error}", "error")
    return redirect(url_for("files.index", project_id=project_id))


@bp.route("/<int:file_id>/delete", methods=["GET", "POST"])
def delete(project_id: int, file_id: int):
    file = services.get_file_for(current_user, project_id, file_id)
    form = ConfirmForm()
    if form.validate_on_submit():
        name = file.name
        services.delete_file(user=current_user, project_id=project_id, file_id=file_id)
        flash(f"Deleted {name}.", "info")
        return redirect(url_for("files.index", project_id=project_id))
    return render_template(
        "files/delete.html", project=get_project_for(current_user, project_id), file=file, form=form
    )
