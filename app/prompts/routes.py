"""Prompt pages: editor + history (the project's Prompt tab), one version, rollback, diff."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.auth.forms import ConfirmForm
from app.errors import AppError
from app.forms import apply_errors
from app.prompts import charts, metrics, services
from app.prompts.forms import PromptForm
from app.prompts.versions import DEFAULT_SYSTEM_PROMPT, active_version

bp = Blueprint("prompts", __name__, url_prefix="/projects/<int:project_id>/prompts")
bp.add_app_template_global(charts.sparkline, "sparkline")
bp.add_app_template_global(charts.metric_value, "metric_value")


@bp.before_request
@login_required
def require_login():
    return None


@bp.route("", methods=["GET", "POST"])
def index(project_id: int):
    project, versions = services.list_versions(user=current_user, project_id=project_id)
    current = active_version(project)
    form = PromptForm(data={"content": current.content if current else DEFAULT_SYSTEM_PROMPT})
    if form.validate_on_submit():
        try:
            result = services.create_version(
                user=current_user,
                project_id=project.id,
                content=form.content.data,
                note=form.note.data,
            )
        except AppError as exc:
            apply_errors(form, exc)
        else:
            if result.created:
                flash(f"Saved as version {result.version.version}; it is now active.", "success")
            else:
                flash(f"No changes: version {result.version.version} stays active.", "info")
            return redirect(url_for("prompts.index", project_id=project.id))
    counts = services.reply_counts(project.id)
    window = metrics.page_window(request.args.get("window"))  # unknown: the default, 7 d
    return render_template(
        "prompts/index.html",
        project=project,
        versions=versions,
        active=current,
        default_prompt=DEFAULT_SYSTEM_PROMPT,
        form=form,
        counts=counts,
        confirm=ConfirmForm(),
        metrics=services.metrics_for(user=current_user, project_id=project.id, window=window),
        window=window,
    ), (422 if form.errors or form.form_errors else 200)


@bp.get("/<int:version>")
def show(project_id: int, version: int):
    found = services.get_version(user=current_user, project_id=project_id, number=version)
    _, versions = services.list_versions(user=current_user, project_id=project_id)
    return render_template(
        "prompts/show.html",
        project=found.project,
        version=found,
        versions=versions,
        confirm=ConfirmForm(),
    )


@bp.post("/<int:version>/activate")
def activate(project_id: int, version: int):
    # CSRF was checked for every cookie-authenticated POST before this view runs.
    services.activate_version(user=current_user, project_id=project_id, number=version)
    flash(f"Version {version} is active again.", "success")
    return redirect(url_for("prompts.index", project_id=project_id))


@bp.get("/diff")
def diff(project_id: int):
    result = services.diff_versions(
        user=current_user,
        project_id=project_id,
        from_number=request.args.get("from"),
        to_number=request.args.get("to"),
    )
    project, versions = services.list_versions(user=current_user, project_id=project_id)
    return render_template(
        "prompts/diff.html",
        project=project,
        versions=versions,
        a=result.a,
        b=result.b,
        diff=result.text,
        settings_changes=result.settings_changes,
        active=active_version(project),
        counts=services.reply_counts(project.id),
        confirm=ConfirmForm(),
    )
