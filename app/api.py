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
    return data


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
