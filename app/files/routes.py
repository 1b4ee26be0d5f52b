"""File pages: the project's Files tab, form upload, download by name, delete, chat toggle."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app import llm
from app.edge import refuse_unknown_fields, takes_uploads
from app.errors import AppError, Conflict, ValidationFailed
from app.files import services
from app.files.serializers import download_response, file_json
from app.forms import ConfirmForm
from app.limits import upload_per_user
from app.models import SyncStatus
from app.projects.services import get_project_for

bp = Blueprint("files", __name__, url_prefix="/projects/<int:project_id>/files")


@bp.before_request
@login_required
def require_login():
    return None


@bp.get("")
def index(project_id: int):
    """The Files tab for browsers; a JSON list (``{"data": [...]}``) for everyone else."""
    files = services.list_files(user=current_user, project_id=project_id)
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    if best != "text/html":
        return {"data": [file_json(f) for f in files]}
    return render_template(
        "files/index.html",
        project=get_project_for(current_user, project_id),
        files=files,
        limit_mb=services.upload_limit_mb(),
        types=services.upload_types(),
        mirror=llm.openai_files().configured,
        confirm=ConfirmForm(),
    )


@bp.post("")
@takes_uploads
@upload_per_user
def upload(project_id: int):
    """Form upload of one or more files (the page's script uploads them one by one to the API,
    with progress; this is the same without JavaScript). Each file's outcome is flashed."""
    project = get_project_for(current_user, project_id)  # before the body is parsed
    try:
        refuse_unknown_fields("file")
    except ValidationFailed as exc:  # nothing stored: the form was not ours
        flash(exc.message, "error")
        return redirect(url_for("files.index", project_id=project_id))
    uploads = [u for u in request.files.getlist("file") if u.filename]
    if not uploads:
        flash("Choose at least one file to upload.", "error")
    for item in uploads:
        try:
            result = services.store_upload(project, filename=item.filename, stream=item.stream)
        except AppError as exc:
            flash(exc.message, "error")
        else:
            if result.created:
                flash(f"Uploaded {result.file.name}.", "success")
            else:
                flash(f"{item.filename} is already here, as {result.file.name}.", "info")
    return redirect(url_for("files.index", project_id=project_id))


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
def sync(project_id: int, file_id: int):
    try:
        file = services.retry_sync(user=current_user, project_id=project_id, file_id=file_id)
    except Conflict as exc:  # no OpenAI key configured
        flash(exc.message, "error")
    else:
        if file.sync_status == SyncStatus.SYNCED:
            flash(f"{file.name} is copied to OpenAI.", "success")
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
