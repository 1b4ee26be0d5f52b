"""The parent ``api`` blueprint (``/api``) and the helpers every JSON route uses.

Feature blueprints (``app/<feature>/api.py``) are nested under it in ``app/blueprints.py``.
Bearer authentication and the CSRF rule live in ``app/auth/loading.py``, because they apply to
the whole app, not only to this prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any, TypeVar

from flask import Blueprint, current_app, request
from flask_login import current_user
from pydantic import ValidationError

from app.apimodels import Body, Query
from app.cors import is_preflight
from app.edge import JSONTooDeep
from app.errors import (
    BadRequest,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.models.base import MAX_DB_INT, db_int

bp = Blueprint("api", __name__, url_prefix="/api")


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 415/413/400/422 ``AppError``.

    The body is capped before it is read (``MAX_JSON_KB``, chunked or not: a 413 from
    ``app/edge.py``) and its nesting is checked before it is parsed. Views read it through
    ``body``, which checks it against the operation's model."""
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
    return data


def body(*, optional: bool = False) -> Any:
    """The request's JSON body as the model its view declares (``@operation(body=...)``): a
    field the operation does not take (nested objects included) is a 422 naming it, a field of
    the wrong type a 422 saying what it must be. ``optional``: no body (no ``Content-Length``)
    is the model's defaults."""
    model = current_app.view_functions[request.endpoint].operation.body
    if optional and not request.content_length:
        return model()
    return parse_body(model, json_body())


@cache
def path_template(rule: str) -> str:
    """``/api/projects/<int:project_id>`` → ``/api/projects/{project_id}`` (OpenAPI's form)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


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


# --- reading a body ----------------------------------------------------------------------------

M = TypeVar("M", bound=Body)
Q = TypeVar("Q", bound=Query)

UNKNOWN_FIELD = "This field is not part of this request."
_KINDS = {
    "string_type": "Must be a string.",
    "int_type": "Must be a whole number.",
    "bool_type": "Must be true or false.",
    "float_type": "Must be a number.",
    "model_type": "Must be an object.",
    "dict_type": "Must be an object.",
    "list_type": "Must be a list.",
    "missing": "This field is required.",
}


def _message(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _KINDS:
        return _KINDS[kind]
    if ctx.get("ge") == -MAX_DB_INT - 1 or ctx.get("le") == MAX_DB_INT:
        # Database integers; a larger number would overflow inside the query.
        return f"Must be a whole number between {-MAX_DB_INT - 1} and {MAX_DB_INT}."
    if kind == "greater_than_equal":
        return f"Must be at least {ctx['ge']}."
    if kind == "less_than_equal":
        return f"Must be at most {ctx['le']}."
    if kind == "literal_error":
        return f"Must be {ctx.get('expected', 'one of the listed values')}."
    return str(error.get("msg", "Not valid."))


def _dotted(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def parse_body(model: type[M], data: dict[str, Any]) -> M:
    """``data`` as ``model``, or a 422: first the fields it does not take (all of them, dotted
    when nested: ``left.colour``; also inside a ``Checked`` object), then what is wrong with
    the others."""
    unknown = unknown_fields(model, data)
    if unknown:
        raise ValidationFailed(
            f"Unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}.",
            fields=dict.fromkeys(unknown, UNKNOWN_FIELD),
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
    fields: dict[str, str] = {}
    for error in errors:
        fields.setdefault(_dotted(error["loc"]), _message(error))
    raise ValidationFailed(fields=fields) from None


def parse_query(model: type[Q], args: dict[str, str]) -> Q:
    """The query string's arguments as ``model``, or a 422 naming each bad one."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
    raise ValidationFailed(fields={_dotted(e["loc"]): _message(e) for e in errors}) from None


def unknown_fields(model: type[Body], data: dict[str, Any], path: str = "") -> list[str]:
    """Dotted names of the fields in ``data`` that ``model`` does not list, nested objects
    included."""
    known = model.model_fields
    found = []
    for key, value in data.items():
        name = f"{path}.{key}" if path else str(key)
        info = known.get(key)
        if info is None:
            found.append(name)
        elif isinstance(value, dict) and _is_body(info.annotation):
            found += unknown_fields(info.annotation, value, name)
    return found


def _is_body(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Body)


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


def as_id(name: str, value: Any, *, required: bool = False) -> int | None:
    """An id given as a whole number or as a string of digits (``"12"``), else a 422."""
    if value is None:
        if required:
            raise ValidationFailed(fields={name: "This field is required."})
        return None
    if isinstance(value, str):
        number = db_int(value)
        if number is None or number < 1:
            raise ValidationFailed(
                fields={name: f"Must be an id: a whole number up to {MAX_DB_INT}."}
            )
        return number
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(fields={name: "Must be a whole number."})
    if not -MAX_DB_INT - 1 <= value <= MAX_DB_INT:
        # Ids are database integers; a larger number would overflow inside the query.
        raise ValidationFailed(
            fields={name: f"Must be a whole number between {-MAX_DB_INT - 1} and {MAX_DB_INT}."}
        )
    return value


def args() -> Any:
    """The query string as the model its view declares (``@operation(query=...)``), or a 422
    naming each bad argument."""
    model = current_app.view_functions[request.endpoint].operation.query
    return parse_query(model, request.args.to_dict())


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
