"""The OpenAPI 3.1 document of the JSON API, served at ``GET /api/openapi.json``, assembled from
the routes themselves: each ``/api`` view's declaration (``@operation``, ``app/apimodels.py``)
and the JSON Schema of the pydantic models it names (each feature's ``schemas.py``). Nothing
here repeats a shape: this module adds what every operation shares (the errors each kind of
operation can answer, path parameters, security) and the document's frame.

The route of the document itself is added to the ``api`` blueprint here, when this module is
first imported (by the app factory, before any blueprint is registered), since it needs every
other route. What keeps it true: ``tests/test_openapi.py`` checks that every ``/api`` rule and
method is documented and every documented operation is routed, that the document is valid
OpenAPI 3.1, and that real responses validate against it; ``tests/test_openapi_fuzz.py`` runs
schemathesis over it against the app. The document does not depend on an app's configuration
(limits that are configurable are described, not encoded).
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Flask, Response

from app import api
from app.apimodels import (
    Error,
    Operation,
    Query,
    Reply,
    Schema,
    component_schemas,
    inline,
    operation,
    retry_after,
    tidy,
)
from app.blueprints import ALL  # noqa: F401 (every API route is nested into ``api.bp`` there)
from app.chat.schemas import SSE_EVENTS as _EVENT_MODELS
from app.models.base import MAX_DB_INT

ID: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_DB_INT}
METHODS = ("get", "post", "put", "patch", "delete")
TAGS = (
    "auth",
    "keys",
    "projects",
    "share",
    "prompts",
    "chat",
    "conversations",
    "compare",
    "files",
    "meta",
)

# Each server-sent event's name and the component describing its data.
SSE_EVENTS = {name: model.__name__ for name, model in _EVENT_MODELS.items()}

ERRORS = {
    400: ("BadRequest", "Malformed request: `invalid_json` (not JSON, or not an object), "
          "`json_too_deep` (arrays and objects nested more than 64 levels), `invalid_input` (a "
          "NUL character in the path or the query string), `csrf_failed` (a "
          "cookie-authenticated write without `X-CSRFToken`)."),
    401: ("Unauthorized", "No or a bad credential: `unauthorized`, `token_invalid`, "
          "`token_expired`, `token_revoked`. Also answered to any request that sends a bad "
          "bearer token, public operations included."),
    403: ("Forbidden", "`cross_origin`: a write authenticated by the session cookie whose "
          "`Origin` (or, without one, `Referer`) names another site. Never answered to bearer "
          "requests."),
    404: ("NotFound", "`not_found`: missing, or another user's (indistinguishable)."),
    409: ("Conflict", "`conflict`: the request conflicts with stored data."),
    413: ("PayloadTooLarge", "`payload_too_large`: a JSON body over `MAX_JSON_KB` (256 KiB), "
          "or a request over the upload limit, with or without a `Content-Length` (a chunked "
          "body is refused at the first byte past the limit)."),
    415: ("UnsupportedMediaType", "`unsupported_media_type`: send `application/json`."),
    422: ("ValidationFailed", "`validation_failed`: see `fields` for what is wrong. Operations "
          "that call a model also answer `input_too_long`: the system prompt, files, earlier "
          "messages and message together are over the server's `CHAT_INPUT_MAX_CHARS`."),
    429: ("RateLimited", "`rate_limited`: too many requests from this address, account or "
          "user (`RATELIMIT_*`); nothing was done. Wait `Retry-After` seconds. Operations that "
          "call a model also answer `budget_exceeded`: the account's model spending for the "
          "day or month reached its cap (`budget`; `GET /api/usage`), nothing was stored or "
          "sent, and `Retry-After` is the time until it resets."),
    502: ("ProviderFailed", "Every language model provider failed: "
          "`provider_unavailable`, `provider_rejected` (400-class refusal), `content_policy`."),
    503: ("DatabaseUnavailable", "`database_unavailable`: the database cannot be reached for "
          "a moment; nothing was done. Try again after `Retry-After` seconds."),
}  # fmt: skip

PATH_PARAMS = {
    "project_id": "A project of yours.",
    "conversation_id": "A conversation in one of your projects.",
    "turn_id": "A turn: the id of its assistant message (`turn_id` of the `start` event).",
    "file_id": "A file in the project.",
    "message_id": "A message in one of your conversations.",
    "version": "A prompt version number of the project (1, 2, 3 …).",
    "comparison_id": "A comparison in one of your projects.",
    "key_id": "One of your API keys.",
    "link_id": "A share link of the project.",
    "label": "A label of the project (`staging`, `eu` …; `production` and `candidate` are "
    "built in and cannot be moved or deleted here).",
}
# Path parameters that are not ids.
PATH_SCHEMAS: dict[str, Schema] = {
    "label": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,39}$"},
}

DESCRIPTION = (
    "Projects, versioned system prompts, streamed chat and files. Authenticate with "
    "`Authorization: Bearer <token>` from register or login. Errors are always "
    '`{"error": {"code", "message", "fields"?, "budget"?}}`; another user\'s data is always a '
    "404. Integers in paths, queries and bodies are 32-bit.\n\nBrowser apps on another origin "
    "may call the API when the server lists that origin in `CORS_ORIGINS` (CORS: preflights "
    "need no authentication, answers are cached 7200 s; `Retry-After`, `X-RateLimit-*`, "
    "`Content-Disposition` and `X-Request-ID` are exposed). Such calls must send a bearer "
    "token: a cookie never authorises a request whose `Origin` is another origin, and "
    "credentials are never allowed."
)

BEARER = (
    "An HS256 JWT from register or login, valid for `JWT_EXPIRES_DAYS` (7 by default). Revoked "
    "by logout-all, and all at once when the server's `JWT_SECRET` changes."
)


_RETRY_AFTER = {
    429: retry_after("Seconds until the limit lets a request through again."),
    503: retry_after("Seconds to wait before trying again."),
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> dict:
    return {"application/json": {"schema": schema}}


# --- the document's own route ------------------------------------------------------------------


@operation(
    "getOpenApi",
    "This document",
    tag="meta",
    responses={200: Reply("The OpenAPI 3.1 document.", schema={"type": "object"})},
)
@api.public
def serve():
    """The OpenAPI 3.1 document of this API."""
    return Response(spec_json(), mimetype="application/json")


api.bp.add_url_rule("/openapi.json", "openapi", serve, methods=["GET"])


# --- assembling ----------------------------------------------------------------------------------


def _routes() -> list[tuple[str, str, Any]]:
    """(path, method, view) of every ``/api`` route, paths in OpenAPI's form."""
    app = Flask(__name__)
    app.register_blueprint(api.bp)
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        for method in METHODS:
            if method.upper() in (rule.methods or ()):
                view = app.view_functions[rule.endpoint]
                found.append((api.path_template(rule.rule), method, view))
    return found


def _error(status: int, description: str | None = None) -> Schema:
    name, _ = ERRORS[status]
    if description is None:
        return {"$ref": f"#/components/responses/{name}"}
    return {"description": description, "content": _json(ref("Error"))}


def _reply(reply: Reply | str, status: int, schemas: dict[type, Schema]) -> Schema:
    if isinstance(reply, str):  # a description: of an answer without a body, or of an error
        return {"description": reply} if status < 400 else _error(status, reply)
    out: Schema = {"description": reply.description}
    if reply.headers:
        out["headers"] = reply.headers
    if reply.content is not None:
        out["content"] = reply.content
        return out
    content = {}
    if reply.error:
        content = _json(ref("Error"))
    elif reply.model is not None:
        content = _json(schemas[reply.model])
    elif reply.schema is not None:
        content = _json(reply.schema)
    if reply.stream:
        # Per event (OpenAPI 3.2 calls this `itemSchema`; 3.1 tools read `schema` per event).
        content["text/event-stream"] = {"schema": ref("ChatStreamEvent")}
    if content:
        out["content"] = content
    return out


def _operation(path: str, method: str, view, declared: Operation, schemas, bodies) -> dict:
    """One operation: its declaration, and the errors every operation of its kind can answer
    (400, 401 and 503 always: the path and query-string guard, a bad token, the database out of
    reach; 413, 415 and 422 with a JSON body; 429 when rate limited; 404 for every path with an
    id in it, 403 for every write), so no operation can forget them."""
    result: dict[str, Any] = {
        "operationId": declared.operation_id,
        "tags": [declared.tag],
        "summary": declared.summary,
    }
    if declared.description:
        result["description"] = declared.description
    if getattr(view, "is_public", False):
        result["security"] = []
    if declared.query is not None:
        result["parameters"] = _query_parameters(declared.query)
    shared = [400, 401, 503, *declared.errors]
    if declared.body is not None:
        content = _json(bodies[declared.body])
        result["requestBody"] = {"required": not declared.body_optional, "content": content}
        shared += [413, 415, 422]
    elif declared.body_content is not None:
        result["requestBody"] = {"required": True, "content": declared.body_content}
    if declared.rate_limited:
        shared.append(429)
    if "{" in path:
        shared.append(404)
    if method != "get":  # the Origin check on cookie-authenticated writes
        shared.append(403)
    responses = {status: _error(status) for status in shared}
    for status, reply in declared.responses.items():
        responses[status] = _reply(reply, status, schemas)
    result["responses"] = {str(code): responses[code] for code in sorted(responses)}
    return result


@cache
def _query_parameters(model: type[Query]) -> list[dict]:
    schema = tidy(model.model_json_schema(mode="validation"))
    required = set(schema.get("required", ()))
    found = []
    for name, prop in schema["properties"].items():
        description = prop.pop("description")
        found.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": prop,
                "description": description,
            }
        )
    return found


def _path_parameters(path: str) -> list[dict]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": PATH_SCHEMAS.get(name, ID),
            "description": PATH_PARAMS[name],
        }
        for name in re.findall(r"{(\w+)}", path)
    ]


def _stream_event() -> Schema:
    names = list(SSE_EVENTS)
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"enum": names},
            "data": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
        "additionalProperties": False,
        "description": "One server-sent event: its name and one line of JSON data.",
        "oneOf": [
            {
                "properties": {
                    "event": {"const": name},
                    "data": {"contentMediaType": "application/json", "contentSchema": ref(model)},
                }
            }
            for name, model in SSE_EVENTS.items()
        ],
    }


def _version() -> str:
    try:
        return version("prompthub")
    except PackageNotFoundError:  # pragma: no cover (running from a bare checkout)
        return "0"


@cache
def _build() -> dict:
    routes = [(p, m, v, v.operation) for p, m, v in _routes() if hasattr(v, "operation")]
    replies = [
        r.model
        for *_, declared in routes
        for r in declared.responses.values()
        if isinstance(r, Reply) and r.model is not None
    ]
    out_models = list(dict.fromkeys([Error, *replies, *_EVENT_MODELS.values()]))
    schemas, components = component_schemas(out_models)
    body_models = list(dict.fromkeys(d.body for *_, d in routes if d.body is not None))
    body_refs, body_defs = component_schemas(body_models)
    bodies = {model: inline(body_refs[model], body_defs) for model in body_models}
    components["ChatStreamEvent"] = _stream_event()

    paths: dict[str, dict] = {}
    for path, method, view, declared in routes:
        item = paths.setdefault(path, {})
        if "{" in path:
            item["parameters"] = _path_parameters(path)
        item[method] = _operation(path, method, view, declared, schemas, bodies)
    return {
        "openapi": "3.1.0",
        "info": {"title": "PromptHub API", "version": _version(), "description": DESCRIPTION},
        "tags": [{"name": name} for name in TAGS],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": BEARER,
                }
            },
            "schemas": dict(sorted(components.items())),
            "responses": {
                name: {"description": description, "content": _json(ref("Error"))}
                | ({"headers": _RETRY_AFTER[status]} if status in _RETRY_AFTER else {})
                for status, (name, description) in ERRORS.items()
            },
        },
    }


def spec() -> dict:
    """The document (a copy: callers may change it freely)."""
    return copy.deepcopy(_build())


@cache
def request_bodies() -> dict[tuple[str, str], Schema]:
    """Every operation's JSON request body by (path, method)."""
    found = {}
    for path, item in _build()["paths"].items():
        for method, operation_ in item.items():
            if method == "parameters":
                continue
            content = operation_.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                found[(path, method)] = content["application/json"]["schema"]
    return found


@cache
def spec_json() -> str:
    """The document as served, serialised once per process."""
    return json.dumps(_build(), ensure_ascii=False, indent=1)
