"""Health endpoints and one structured log line per request, with a request id.

``/healthz`` says the process answers; ``/readyz`` also runs ``SELECT 1`` and answers 503 when
the database cannot be reached. Each request gets an id (a sane incoming ``X-Request-ID`` is
kept, else a new one), echoed in the response's ``X-Request-ID`` and in the access line:
method, path without the query string, status, duration, user id. Never bodies, query strings,
cookies or ``Authorization`` headers. For a streamed reply the duration is the time to the
response headers; the chat stores its own timings on the message.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request
from flask_login import current_user
from sqlalchemy import text

access_log = logging.getLogger("prompthub.access")
log = logging.getLogger(__name__)
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id() -> str:
    return g.get("request_id", "-")


def init_app(app: Flask) -> None:
    @app.before_request
    def start_request() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        started = g.get("started")
        duration_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        # The user id, never get_id(): that is the session id, a credential.
        user_id = str(current_user.id) if current_user and current_user.is_authenticated else "-"
        access_log.info(
            "request_id=%s method=%s path=%s status=%s duration_ms=%.1f user=%s",
            request_id(),
            request.method,
            request.path,
            response.status_code,
            duration_ms,
            user_id,
        )
        return response

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        from app.extensions import db

        try:
            db.session.execute(text("SELECT 1"))
        except Exception as exc:  # any failure to reach the database means "not ready"
            db.session.rollback()
            log.warning("readiness check failed: %s", type(exc).__name__)
            return {"status": "unavailable", "checks": {"database": type(exc).__name__}}, 503
        finally:
            db.session.remove()
        return {"status": "ok", "checks": {"database": "ok"}}
