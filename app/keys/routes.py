"""The API keys page: the list, a form to create one (its secret shown once, on the answer to
the form, never stored or flashed), and Revoke."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from wtforms.fields.choices import SelectChoice

from app.errors import AppError
from app.forms import ConfirmForm, apply_errors
from app.keys import services
from app.keys.forms import KeyForm
from app.limits import keys_per_user

bp = Blueprint("keys", __name__)


def _form(**options) -> KeyForm:
    form = KeyForm(**options)
    projects = services.projects_for(current_user, None)
    form.project_id.choices = [SelectChoice(0, "Every project: a personal key")] + [
        SelectChoice(p.id, f"{p.name} only ({p.slug}): a project key") for p in projects
    ]
    return form


@bp.route("/keys", methods=["GET", "POST"])
@login_required
@keys_per_user
def index():
    form = _form()
    created = None
    if form.validate_on_submit():
        try:
            key, secret = services.create_key(
                user=current_user,
                name=form.name.data,
                scope=form.scope.data,
                project_id=form.project_id.data or None,
                expires_in_days=form.expires_in_days.data,
                rate_per_minute=form.rate_per_minute.data,
                monthly_tokens=form.monthly_tokens.data,
            )
        except AppError as exc:
            apply_errors(form, exc)
        else:
            created = (key, secret)
            form = _form(formdata=None)  # an empty form for the next key
    status = 422 if form.errors or form.form_errors else (201 if created else 200)
    page = render_template(
        "keys/index.html",
        form=form,
        keys=services.list_keys(current_user),
        created=created,
        confirm=ConfirmForm(),
    )
    return page, status, {"Cache-Control": "no-store"}  # the secret is on this page once


@bp.post("/keys/<int:key_id>/revoke")
@login_required
@keys_per_user
def revoke(key_id: int):
    if ConfirmForm().validate_on_submit():
        key = services.revoke_key(user=current_user, key_id=key_id)
        flash(f"Key “{key.name}” ({key.prefix}…) is revoked: it is refused from now on.", "info")
    return redirect(url_for("keys.index"))
