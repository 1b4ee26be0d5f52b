"""Form helpers shared by every feature's HTML routes: ``ConfirmForm`` for buttons, and
``apply_errors``, which maps a service error onto a WTForms form."""

from __future__ import annotations

from flask_wtf import FlaskForm

from app.errors import AppError


class ConfirmForm(FlaskForm):
    """A bare CSRF-protected form for buttons (log out, delete, promote)."""


def checks_own_csrf(view):
    """Mark a view that checks a token of its own instead of the login session's CSRF token
    (a share link's visitor writes: ``share.visitors.check_token``); ``auth.loading`` skips
    the session's check for it. The origin check still applies."""
    view.checks_own_csrf = True
    return view


def apply_errors(form: FlaskForm, exc: AppError) -> None:
    """Put a service error next to the fields it names, the rest at the top of the form."""
    placed = False
    for name, message in (exc.fields or {}).items():
        field = getattr(form, name, None)
        if field is not None and hasattr(field, "errors"):
            field.errors = [*field.errors, message]
            placed = True
    if not placed:
        form.form_errors.append(exc.message)
