"""Project pages: dashboard, create, detail, update, delete (with confirmation)."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app import usage
from app.chat import services as chat_services
from app.errors import AppError
from app.forms import ConfirmForm, apply_errors
from app.llm import describe, is_offline
from app.models.base import db_int
from app.projects import services
from app.projects.forms import EditProjectForm, NewProjectForm
from app.prompts.versions import active_version

bp = Blueprint("projects", __name__)


@bp.before_request
@login_required
def require_login():
    return None


@bp.get("/")
def index():
    cards = services.project_cards(user=current_user)
    spending = usage.summary(current_user.id)
    return render_template("projects/index.html", cards=cards, spending=spending)


# The pages a design names by feature rather than by project: they open that tab of the most
# recently active project, or the dashboard when there is none yet.
@bp.get("/chat")
def chat_landing():
    return _latest_project_tab("projects.detail", "Create a project to start chatting.")


@bp.get("/upload")
def upload_landing():
    return _latest_project_tab("files.index", "Create a project to upload files into it.")


def _latest_project_tab(endpoint: str, hint: str):
    project = services.latest_project(user=current_user)
    if project is None:
        flash(hint, "info")
        return redirect(url_for("projects.index"))
    return redirect(url_for(endpoint, project_id=project.id))


@bp.route("/projects/create", methods=["GET", "POST"])
def create():
    form = NewProjectForm()
    if form.validate_on_submit():
        try:
            project = services.create_project(
                user=current_user,
                name=form.name.data,
                description=form.description.data,
                system_prompt=form.system_prompt.data,
            )
        except AppError as exc:
            apply_errors(form, exc)
        else:
            flash(f"Project “{project.name}” created.", "success")
            return redirect(url_for("projects.detail", project_id=project.id))
    return render_template("projects/form.html", form=form, project=None), (
        422 if form.errors else 200
    )


@bp.get("/projects/<int:project_id>")
def detail(project_id: int):
    """The project page; its first tab is the chat (``?c=<conversation id>`` opens one,
    ``?version=<n>`` starts a new chat pinned to that prompt version, ``?label=staging`` to
    the version that label points at)."""
    view = chat_services.open_chat(
        user=current_user,
        project_id=project_id,
        conversation_id=db_int(request.args.get("c", "")),
        pin=db_int(request.args.get("version", "")),
        label=request.args.get("label"),
    )
    return render_template(
        "chat/page.html",
        view=view,
        project=view.project,
        offline=is_offline(current_app),
        provider_line=describe(current_app),
        spending=usage.summary(current_user.id),
    )


@bp.route("/projects/<int:project_id>/update", methods=["GET", "POST"])
def update(project_id: int):
    project = services.get_project_for(current_user, project_id)
    form = EditProjectForm(obj=project)
    production = active_version(project)
    if not form.is_submitted():
        form.system_prompt.data = production.content if production else ""
        form.prompt_base.data = production.version if production else 0
    if form.validate_on_submit():
        before = project.active_prompt_id
        try:
            services.update_project(
                user=current_user,
                project_id=project.id,
                name=form.name.data,
                description=form.description.data,
                system_prompt=form.system_prompt.data,
                prompt_base=form.prompt_base.data,
            )
        except AppError as exc:
            apply_errors(form, exc)
            # Saving again means "over what is live now" (the error said what changed).
            form.prompt_base.data = production.version if production else 0
            form.prompt_base.raw_data = None  # render the new base, not the submitted one
        else:
            saved = active_version(project)
            if project.active_prompt_id != before and saved is not None:
                flash(f"Project saved; the prompt is now version {saved.version}.", "success")
            else:
                flash("Project saved.", "success")
            return redirect(url_for("projects.detail", project_id=project.id))
    return render_template("projects/form.html", form=form, project=project), (
        422 if form.errors else 200
    )


@bp.route("/projects/<int:project_id>/delete", methods=["GET", "POST"])
def delete(project_id: int):
    project = services.get_project_for(current_user, project_id)
    form = ConfirmForm()
    if form.validate_on_submit():
        name = project.name
        services.delete_project(user=current_user, project_id=project.id)
        flash(f"Project “{name}” deleted.", "info")
        return redirect(url_for("projects.index"))
    return render_template("projects/delete.html", project=project, form=form)
