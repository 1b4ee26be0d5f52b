"""Prompt pages: editor + history (the project's Prompt tab), one version, rollback, diff, and
the prompt lab's release controls (candidate, canary, promote, discard)."""

from __future__ import annotations

import json

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app import catalog
from app.errors import AppError, Conflict, ValidationFailed
from app.forms import ConfirmForm, apply_errors
from app.limits import labels_per_user
from app.prompts import charts, labels, metrics, services
from app.prompts.forms import CanaryForm, LabelForm, PromptForm, declarations, editor_rows
from app.prompts.versions import DEFAULT_SYSTEM_PROMPT, settings_of, template_of

bp = Blueprint("prompts", __name__, url_prefix="/projects/<int:project_id>/prompts")
bp.add_app_template_global(charts.sparkline, "sparkline")
bp.add_app_template_global(charts.metric_value, "metric_value")


@bp.before_request
@login_required
def require_login():
    return None


def _model_choices(current: str) -> list[tuple[str, str]]:
    choices = [(c.name, c.name) for c in catalog.choices()]
    if current not in {name for name, _ in choices}:
        choices.append((current, f"{current} (no longer offered)"))
    return choices


def _editor(project, *, fresh: bool = False) -> PromptForm:
    """The editor, filled from what is being worked on: the candidate, else production.
    ``fresh``: not from this request's form data (another form's POST, whose data has no
    variable rows and would leave the editor without them)."""
    active, candidate = services.release_of(project)
    base = candidate or active
    settings = settings_of(base)
    form = PromptForm(
        **({"formdata": None} if fresh else {}),
        data={
            "content": base.content if base else DEFAULT_SYSTEM_PROMPT,
            "model": settings.model,
            "temperature": settings.temperature,
            "max_output_tokens": settings.max_output_tokens,
            "variables": editor_rows(template_of(base).variables),
            "output_format": settings.output_format,
            "output_schema": json.dumps(settings.output_schema, indent=2)
            if settings.output_schema is not None
            else "",
        },
    )
    form.model.choices = _model_choices(settings.model)
    return form


def _on_rows(exc: AppError, form: PromptForm, rows: list[int]) -> AppError:
    """Put ``variables[i].field`` errors on the editor's row of variable ``i`` (other variable
    errors at the top of the form); the rest is left for ``apply_errors``."""
    rest = {}
    for key, message in (exc.fields or {}).items():
        index, _, name = key.removeprefix("variables[").partition("].")
        if key.startswith("variables[") and index.isdigit() and int(index) < len(rows):
            row = form.variables.entries[rows[int(index)]].form
            target = getattr(row, name, None) or row.name
            target.errors = [*target.errors, message]
        elif key.startswith("variables"):
            form.form_errors.append(message)
        else:
            rest[key] = message
    if rest or not exc.fields:
        exc.fields = rest or exc.fields
        return exc
    return AppError("Check the variables below.")


def _tab(
    project,
    versions,
    form,
    status: int = 200,
    canary: CanaryForm | None = None,
    label_form: LabelForm | None = None,
):
    active, candidate = services.release_of(project)
    _, named = labels.list_labels(user=current_user, project_id=project.id)
    window = metrics.page_window(request.args.get("window"))  # unknown: the default, 7 d
    source = request.args.get("source")
    source = source if source in metrics.SOURCES else metrics.DEFAULT_SOURCE
    return render_template(
        "prompts/index.html",
        project=project,
        versions=versions,
        active=active,
        candidate=candidate,
        default_prompt=DEFAULT_SYSTEM_PROMPT,
        form=form,
        canary=canary or CanaryForm(data={"percent": project.canary_percent}),
        counts=services.reply_counts(project.id),
        confirm=ConfirmForm(),
        metrics=services.metrics_for(
            user=current_user, project_id=project.id, window=window, source=source
        ),
        window=window,
        labels=named,
        label_form=label_form or LabelForm(data={"version": active.version if active else None}),
    ), status


@bp.route("", methods=["GET", "POST"])
def index(project_id: int):
    project, versions = services.list_versions(user=current_user, project_id=project_id)
    form = _editor(project)
    if form.validate_on_submit():
        as_candidate = bool(form.save_candidate.data)
        variables, rows = declarations(form)
        try:
            result = services.create_version(
                user=current_user,
                project_id=project.id,
                content=form.content.data,
                note=form.note.data,
                activate=not as_candidate,
                candidate=as_candidate,
                model=form.model.data,
                temperature=form.temperature.data,
                max_output_tokens=form.max_output_tokens.data,
                variables=variables,
                output_format=form.output_format.data,
                output_schema=form.output_schema.data,
            )
        except AppError as exc:
            apply_errors(form, _on_rows(exc, form, rows))
        else:
            number = result.version.version
            if not result.created:
                flash(f"No changes: version {number} already has this text and settings.", "info")
            elif as_candidate:
                flash(
                    f"Saved as version {number}, the candidate. Try it in a pinned chat, compare "
                    "it, or give it a canary share; production is unchanged.",
                    "success",
                )
            else:
                flash(f"Saved as version {number}; it is now live.", "success")
            return redirect(url_for("prompts.index", project_id=project.id))
    return _tab(project, versions, form, 422 if form.errors or form.form_errors else 200)


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
    flash(f"Version {version} is live.", "success")
    return redirect(url_for("prompts.index", project_id=project_id))


@bp.post("/<int:version>/candidate")
def make_candidate(project_id: int, version: int):
    try:
        services.make_candidate(user=current_user, project_id=project_id, number=version)
    except ValidationFailed as exc:  # (NotFound stays a 404)
        flash(exc.message, "error")
    else:
        flash(f"Version {version} is the candidate; production is unchanged.", "success")
    return redirect(url_for("prompts.index", project_id=project_id))


@bp.post("/candidate/promote")
def promote(project_id: int):
    try:
        found = services.promote_candidate(user=current_user, project_id=project_id)
    except Conflict as exc:  # nothing to promote (NotFound stays a 404)
        flash(exc.message, "error")
    else:
        flash(f"Version {found.version} is promoted: it is now live.", "success")
    return redirect(url_for("prompts.index", project_id=project_id))


@bp.post("/candidate/discard")
def discard(project_id: int):
    services.discard_candidate(user=current_user, project_id=project_id)
    flash("The candidate is discarded; its version stays in the history.", "info")
    return redirect(url_for("prompts.index", project_id=project_id))


@bp.post("/canary")
def canary(project_id: int):
    project, versions = services.list_versions(user=current_user, project_id=project_id)
    form = CanaryForm()
    if form.validate_on_submit():
        try:
            project = services.set_canary(
                user=current_user, project_id=project_id, percent=form.percent.data
            )
        except AppError as exc:
            apply_errors(form, exc)
        else:
            share = project.canary_percent
            flash(
                f"{share} % of new conversations now go to the candidate."
                if share
                else "The canary is off: new conversations get production.",
                "success",
            )
            return redirect(url_for("prompts.index", project_id=project_id))
    return _tab(project, versions, _editor(project, fresh=True), 422, canary=form)


@bp.get("/diff")
def diff(project_id: int):
    result, history = services.diff_page(
        user=current_user,
        project_id=project_id,
        from_number=request.args.get("from"),
        to_number=request.args.get("to"),
    )
    return render_template(
        "prompts/diff.html",
        project=history.project,
        versions=history.versions,
        a=result.a,
        b=result.b,
        diff=result.text,
        settings_changes=result.settings_changes,
        active=history.active,
        candidate=history.candidate,
        counts=history.counts,
        confirm=ConfirmForm(),
    )


@bp.post("/labels")
@labels_per_user
def create_label(project_id: int):
    project, versions = services.list_versions(user=current_user, project_id=project_id)
    form = LabelForm()
    if form.validate_on_submit():
        try:
            made = labels.create_label(
                user=current_user,
                project_id=project_id,
                name=form.name.data,
                version=form.version.data,
            )
        except AppError as exc:
            apply_errors(form, exc)
        else:
            flash(f"“{made.name}” points at version {made.version.version}.", "success")
            return redirect(url_for("prompts.index", project_id=project_id, _anchor="labels"))
    return _tab(project, versions, _editor(project, fresh=True), 422, label_form=form)


@bp.post("/labels/<label>/move")
@labels_per_user
def move_label(project_id: int, label: str):
    form = LabelForm()
    form.validate()  # parses the version (None when missing); the service checks it after
    try:  # the ownership check
        moved = labels.move_label(
            user=current_user, project_id=project_id, name=label, version=form.version.data
        )
    except ValidationFailed as exc:  # (NotFound stays a 404)
        flash(exc.message, "error")
    else:
        flash(f"“{moved.name}” now points at version {moved.version.version}.", "success")
    return redirect(url_for("prompts.index", project_id=project_id, _anchor="labels"))


@bp.post("/labels/<label>/delete")
@labels_per_user
def delete_label(project_id: int, label: str):
    try:
        labels.delete_label(user=current_user, project_id=project_id, name=label)
    except ValidationFailed as exc:
        flash(exc.message, "error")
    else:
        flash(f"The label “{label}” is deleted; its version stays.", "info")
    return redirect(url_for("prompts.index", project_id=project_id, _anchor="labels"))
