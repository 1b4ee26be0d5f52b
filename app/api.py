"""The parent ``api`` blueprint (``/api``) and the helpers every JSON route uses.

Feature blueprints (``app/<feature>/api.py``) are nested under it in ``app/blueprints.py``.
Bearer authentication and the CSRF rule live in ``app/auth/loading.py``, because they apply to
the whole app, not only to this prefix.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request
from flask_login import current_user

from app.errors import (
    BadRequest,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)

bp = Blueprint("api", __name__, url_prefix="/api")


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 415/413/400 ``AppError``."""
    if not request.is_json:
        raise UnsupportedMediaType()

    limit = current_app.config["MAX_JSON_KB"] * 1024
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"JSON bodies are limited to {limit // 1024} KiB.")
    data = request.get_json(silent=True)
    if data is None:
        raise BadRequest("The body is not valid JSON.", code="invalid_json")
    if not isinstance(data, dict):
        raise BadRequest("The JSON body must be an object.", code="invalid_json")
    bad = _nul_path(data)
    if bad is not None:
        raise ValidationFailed(fields={bad: "Must not contain NUL (\\u0000) characters."})
    return data


def _nul_path(value: Any, path: str = "") -> str | None:
    """Where a NUL character hides in a JSON value (PostgreSQL text cannot store one)."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return path or "body"
        found = _nul_path(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def init_input_guard(app) -> None:
    """Refuse NUL characters in query strings and urlencoded forms for every route (JSON
    bodies are checked by ``json_body``; multipart bodies are parsed by their views only, after
    the ownership check)."""

    @app.before_request
    def reject_nul_characters():
        values = list(request.args.values())
        if request.mimetype == "application/x-www-form-urlencoded":
            values += request.form.values()
        if any("\x00" in v for v in values):
            raise BadRequest("NUL characters are not allowed in input.", code="invalid_input")
        return None


def field(data: dict[str, Any], name: str, *, required: bool = False, kind: type = str) -> Any:
    """Read one field with a type check; wrong types are 422 with a field error."""
    if name not in data or data[name] is None:
        if required:
            raise ValidationFailed(fields={name: "This field is required."})
        return None
    value = data[name]
    if kind is int and isinstance(value, bool):
        raise ValidationFailed(fields={name: "Must be a whole number."})
    if not isinstance(value, kind):
        names = {str: "a string", int: "a whole number", bool: "true or false"}
        raise ValidationFailed(fields={name: f"Must be {names.get(kind, kind.__name__)}."})
    return value


def public(view):
    """Mark an API view as reachable without authentication (register, login)."""
    view.is_public = True
    return view


@bp.before_request
def require_login():
    """Every API route needs a user unless marked ``@public``: secure by default."""
    view = current_app.view_functions.get(request.endpoint or "")
    if view is not None and getattr(view, "is_public", False):
        return None
    if not current_user.is_authenticated:
        raise Unauthorized("Log in or send a bearer token.", code="unauthorized")
    return None
