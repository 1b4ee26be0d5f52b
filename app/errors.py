"""Error family raised by services, and the handlers that turn errors into responses.

Services raise ``AppError`` subclasses and never build responses. Under ``/api/`` every error
(ours and Werkzeug's) becomes ``{"error": {"code", "message", "fields"?}}``; elsewhere an HTML
error page. Unexpected exceptions roll the session back, are logged with a traceback, and reach
the client as a bare 500 without details. A database that cannot be reached is not unexpected:
a 503 ``database_unavailable`` with ``Retry-After``, logged as one line.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app.apimodels import Error, ErrorDetail
from app.observability import log_safe

log = logging.getLogger(__name__)
# Seconds a client should wait before retrying while the database cannot be reached.
DATABASE_RETRY_AFTER_S = 5


class AppError(Exception):
    status = 400
    code = "bad_request"
    message = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        fields: dict[str, str] | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.fields = fields
        self.headers = headers or {}
        self.extra = extra  # more members of the JSON error object (e.g. ``quota``)
        if code:
            self.code = code


class BadRequest(AppError):
    status, code, message = 400, "bad_request", "The request could not be processed."


class Unauthorized(AppError):
    status, code, message = 401, "unauthorized", "Authentication required."


class Forbidden(AppError):
    status, code, message = 403, "forbidden", "You may not do that."


class NotFound(AppError):
    status, code, message = 404, "not_found", "Not found."


class Conflict(AppError):
    status, code, message = 409, "conflict", "That conflicts with existing data."


class PayloadTooLarge(AppError):
    status, code, message = 413, "payload_too_large", "The request is too large."


class UnsupportedMediaType(AppError):
    status, code, message = 415, "unsupported_media_type", "Send a JSON body (application/json)."


class ValidationFailed(AppError):
    status, code, message = 422, "validation_failed", "Some fields are not valid."


class StorageUnavailable(AppError):
    """The file store (``app/storage/``) cannot be reached or refuses to work; nothing was
    changed. A 503 with ``Retry-After``, like a database that is away."""

    status, code = 503, "storage_unavailable"
    message = "File storage is unavailable for a moment; nothing was changed. Try again shortly."

    def __init__(self, message: str | None = None, **kwargs) -> None:
        kwargs.setdefault("headers", {"Retry-After": str(DATABASE_RETRY_AFTER_S)})
        super().__init__(message, **kwargs)


class BudgetExceeded(AppError):
    """The user's model spending for the day or month reached its cap (``app/usage.py``);
    nothing was stored or sent. 429 with ``Retry-After`` until the period resets."""

    status, code, message = 429, "budget_exceeded", "Your model budget is used up."


class ProviderFailed(AppError):
    """Every language model provider failed a non-streamed turn (502). ``code`` says how:
    ``provider_unavailable`` (the default), ``provider_rejected``, ``content_policy``. Not to be
    confused with ``app.providers.errors.ProviderUnavailable``, one provider's 5xx-class failure."""

    status, code, message = 502, "provider_unavailable", "The language model is unavailable."


def wants_json() -> bool:
    """JSON errors, bearer tokens: the JSON API (``/api``) and the OpenAI-compatible
    endpoints (``/v1``)."""
    path = request.path
    return path == "/api" or path.startswith(("/api/", "/v1/"))


def openai_path() -> bool:
    return request.path.startswith("/v1/")


# OpenAI's error ``type`` by status (https://platform.openai.com/docs/guides/error-codes;
# docs/openai-compatible.md): the official clients pick their exception by status alone.
_OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def openai_error_body(status: int, code: str, message: str, param: str | None = None) -> dict:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    if code == "budget_exceeded" or code == "key_budget_exceeded":
        kind = "insufficient_quota"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_body(
    code: str, message: str, fields: dict[str, str] | None = None, extra=None
) -> dict[str, Any]:
    """The envelope (``apimodels.Error``); ``extra``: its ``quota`` or ``budget``."""
    values: dict[str, Any] = {"code": code, "message": message, **(extra or {})}
    if fields:
        values["fields"] = fields
    return Error(error=ErrorDetail(**values)).as_json()


def _respond(
    status: int, code: str, message: str, fields=None, headers=None, extra=None
) -> Response:
    if openai_path():  # OpenAI's status codes: its clients know no 422
        status = 400 if status == 422 else status
        param = next(iter(fields)) if fields else None
        detail = f"{message} {' '.join(fields.values())}" if fields else message
        resp = jsonify(openai_error_body(status, code, detail.strip(), param))
    elif wants_json():
        resp = jsonify(error_body(code, message, fields, extra))
    else:
        html = render_template("errors/error.html", status=status, message=message)
        resp = Response(html, mimetype="text/html")
    resp.status_code = status
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(AppError)
    def handle_app_error(exc: AppError):
        return _respond(exc.status, exc.code, exc.message, exc.fields, exc.headers, exc.extra)

    @app.errorhandler(CSRFError)
    def handle_csrf(exc: CSRFError):
        return _respond(400, "csrf_failed", f"CSRF check failed: {exc.description}")

    @app.errorhandler(RequestEntityTooLarge)
    def handle_too_large(exc: RequestEntityTooLarge):
        """A body over its route's cap (``app/edge.py``: declared or counted while read, the
        message names the limit), or a multipart text part over Werkzeug's own limit."""
        return _respond(413, "payload_too_large", exc.description or exc.name)

    @app.errorhandler(DBAPIError)
    def handle_database_error(exc: DBAPIError):
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            return handle_database_unavailable(exc)
        return handle_unexpected(exc)

    @app.errorhandler(DisconnectionError)
    @app.errorhandler(SQLAlchemyTimeoutError)
    def handle_database_unavailable(exc: Exception):
        """The database cannot be reached (refused, gone mid-request, no pooled connection
        free in time): a 503 with ``Retry-After``, not a 500. The page is rendered without the
        layout, whose account menu would ask the database for the user again."""
        from app.extensions import db

        try:
            db.session.rollback()
        except SQLAlchemyError:
            pass  # the connection is gone; the pool discards it
        orig = getattr(exc, "orig", None) or exc
        log.error(
            "database unavailable on %s %s: %s: %s",
            request.method,
            log_safe(request.path),
            type(orig).__name__,
            log_safe(str(orig).strip(), spaces=True),
        )
        headers = {"Retry-After": str(DATABASE_RETRY_AFTER_S)}
        message = "The database is unavailable for a moment. Please try again shortly."
        if wants_json():
            return _respond(503, "database_unavailable", message, headers=headers)
        html = app.jinja_env.get_template("errors/unavailable.html").render(message=message)
        return Response(html, status=503, mimetype="text/html", headers=headers)

    @app.errorhandler(RateLimitExceeded)
    def handle_rate_limited(exc: RateLimitExceeded):
        # Flask-Limiter adds Retry-After and the X-RateLimit-* headers after this.
        message = f"Too many requests (limit: {exc.description}). Wait a little and try again."
        return _respond(429, "rate_limited", message)

    @app.errorhandler(HTTPException)
    def handle_http(exc: HTTPException):
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        headers = dict(exc.get_headers()) if status in (405, 429) else {}
        headers.pop("Content-Type", None)
        return _respond(status, code, exc.description or exc.name, headers=headers)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        from app.extensions import db

        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, log_safe(request.path))
        return _respond(500, "internal_error", "Something went wrong on our side.")
