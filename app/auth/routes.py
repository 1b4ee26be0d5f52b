"""Account pages: register, log in, log out, log out everywhere."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from app.auth import services
from app.auth.forms import LoginForm, RegisterForm
from app.errors import AppError
from app.forms import ConfirmForm, apply_errors
from app.limits import count_login_attempt, login_per_address, register_per_address

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str | None:
    """Only same-site paths: no scheme, no host, no '//' or backslash tricks."""
    if not target or "\\" in target or any(ord(c) < 32 for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _start_session(user, remember: bool) -> None:
    session.clear()  # a fresh session at login: nothing from before survives (fixation)
    services.start_session(user=user)  # the server-side row "Log out" deletes
    login_user(user)
    session.permanent = remember


@bp.route("/register", methods=["GET", "POST"])
@register_per_address
def register():
    if current_user.is_authenticated:
        return redirect(url_for("projects.index"))
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            user = services.register_user(
                email=form.email.data, password=form.password.data, name=form.name.data
            )
        except AppError as exc:
            apply_errors(form, exc)
        else:
            _start_session(user, remember=False)
            flash("Welcome to PromptHub! Create your first project.", "success")
            return redirect(url_for("projects.index"))
    return render_template("auth/register.html", form=form), 422 if form.errors else 200


@bp.route("/login", methods=["GET", "POST"])
@login_per_address
def login():
    target = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(target or url_for("projects.index"))
    form = LoginForm()
    if form.validate_on_submit():
        count_login_attempt(form.email.data)  # 429 when this account had too many tries
        try:
            user = services.authenticate(email=form.email.data, password=form.password.data)
        except AppError as exc:
            form.form_errors.append(exc.message)
        else:
            _start_session(user, remember=bool(form.remember.data))
            return redirect(target or url_for("projects.index"))
    status = 422 if form.errors or form.form_errors else 200
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
def logout():
    if ConfirmForm().validate_on_submit():
        if current_user.is_authenticated:
            services.end_session(user=current_user)  # a copy of the cookie is dead too
        logout_user()
        session.clear()
        flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.post("/logout-everywhere")
@login_required
def logout_everywhere():
    if ConfirmForm().validate_on_submit():
        services.revoke_all_sessions(user=current_user)
        logout_user()
        session.clear()
        flash("You are logged out on every device, and all API tokens are revoked.", "info")
    return redirect(url_for("auth.login"))
