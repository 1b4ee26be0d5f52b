"""The parent ``api`` blueprint (``/api``) and the helpers every JSON route uses.

Feature blueprints (``app/<feature>/api.py``) are nested under it in ``app/blueprints.py``.
Bearer authentication and the CSRF rule live in ``app/auth/loading.py``, because they apply to
the whole app, not only to this prefix.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from flask import Blueprint, Response, current_app, request
from flask_login import current_user

from app.cors import is_preflight
from app.edge import JSONTooDeep
from app.errors import (
    BadRequest,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.models.base import MAX_DB_INT, db_int
from app.openapi import body_schema, spec_json

bp = Blueprint("api", __name__, url_prefix="/api")


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 415/413/400/422 ``AppError``.

    The body is capped before it is read (``MAX_JSON_KB``, chunked or not: a 413 from
    ``app/edge.py``) and its nesting is checked before it is parsed. A field the operation does
    not take (per its OpenAPI body, nested objects included) is a 422 naming it: a misspelt or
    unsupported field is never silently dropped."""
    if not request.is_json:
        raise UnsupportedMediaType()
    try:
        data = current_app.json.loads(request.get_data(cache=True))
    except JSONTooDeep as exc:
        raise BadRequest(str(exc), code="json_too_deep") from None
    except ValueError:
        raise BadRequest("The body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("The JSON body must be an object.", code="invalid_json")
    for pattern, message in _UNSTORABLE:
        bad = _path_to(data, pattern)
        if bad is not None:
            raise ValidationFailed(fields={bad: message})
    rule = request.url_rule
    unknown = _unknown_fields(data, body_schema(path_template(rule.rule), request.method) or {})
    if unknown:
        raise ValidationFailed(
            f"Unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}.",
            fields=dict.fromkeys(unknown, "This field is not part of this request."),
        )
    return data


@cache
def path_template(rule: str) -> str:
    """``/api/projects/<int:project_id>`` → ``/api/projects/{project_id}`` (OpenAPI's form)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _unknown_fields(data: dict[str, Any], schema: dict[str, Any], path: str = "") -> list[str]:
    """Dotted names of the fields in ``data`` the body ``schema`` does not list, nested objects
    included. An operation without a documented body takes no fields."""
    known = schema.get("properties", {})
    unknown = []
    for key, value in data.items():
        name = f"{path}.{key}" if path else str(key)
        if key not in known:
            unknown.append(name)
        elif isinstance(value, dict) and "properties" in known[key]:
            unknown += _unknown_fields(value, known[key], name)
    return unknown


# Characters no text column can hold; either would be a 500 at the first write. NUL: PostgreSQL
# text refuses it. Unpaired surrogates: valid JSON escapes (``"\ud800"``) that have no UTF-8
# encoding, so neither database can store them.
_UNSTORABLE = (
    (re.compile("\x00"), "Must not contain NUL (\\u0000) characters."),
    (re.compile("[\ud800-\udfff]"), "Must not contain unpaired surrogates (\\ud800-\\udfff)."),
)


def _path_to(value: Any, pattern: re.Pattern, path: str = "") -> str | None:
    """Where a string matching ``pattern`` hides in a JSON value (keys included), or None."""
    if isinstance(value, str):
        return (path or "body") if pattern.search(value) else None
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        if isinstance(key, str) and pattern.search(key):
            return path or "body"
        found = _path_to(item, pattern, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def init_input_guard(app) -> None:
    """Refuse NUL characters in the path, query strings and urlencoded forms (names and values)
    for every route
    (JSON bodies are checked by ``json_body``; multipart bodies are parsed by their views only,
    after the ownership check). A path segment reaches queries too (download by name), and no
    stored name has a NUL. Surrogates cannot arrive there: Werkzeug decodes UTF-8 with
    replacement."""

    @app.before_request
    def reject_nul_characters():
        values = [request.path, *request.args.keys(), *request.args.values()]
        if request.mimetype == "application/x-www-form-urlencoded":
            values += [*request.form.keys(), *request.form.values()]
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
    if kind is int and not -MAX_DB_INT - 1 <= value <= MAX_DB_INT:
        # Ids are database integers; a larger number would overflow inside the query.
        raise ValidationFailed(
            fields={name: f"Must be a whole number between {-MAX_DB_INT - 1} and {MAX_DB_INT}."}
        )
    return value


def id_field(data: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    """An id given as a whole number or as a string of digits (``"12"``), else a 422."""
    value = data.get(name)
    if isinstance(value, str):
        number = db_int(value)
        if number is None or number < 1:
            raise ValidationFailed(
                fields={name: f"Must be an id: a whole number up to {MAX_DB_INT}."}
            )
        return number
    return field(data, name, required=required, kind=int)


def int_arg(name: str, default: int | None = None) -> int | None:
    """A whole-number query argument (absent or empty: ``default``), else a 422."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = db_int(raw)
    if value is None:
        raise ValidationFailed(fields={name: f"Must be a whole number up to {MAX_DB_INT}."})
    return value


def public(view):
    """Mark an API view as reachable without authentication (register, login)."""
    view.is_public = True
    return view


@bp.before_request
def require_login():
    """Every API route needs a user unless marked ``@public``: secure by default. A CORS
    preflight is let through: browsers never send credentials with it (``app/cors.py``)."""
    if is_preflight():
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    if view is not None and getattr(view, "is_public", False):
        return None
    if not current_user.is_authenticated:
        raise Unauthorized("Log in or send a bearer token.", code="unauthorized")
    return None


@bp.get("/openapi.json")
@public
def openapi():
    """The OpenAPI 3.1 document of this API (``app/openapi.py``)."""
    return Response(spec_json(), mimetype="application/json")
