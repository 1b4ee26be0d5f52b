"""Health endpoints and one structured log line per request, with a request id.

``/healthz`` says the process answers (for a supervisor: restart on that only). ``/readyz`` is
the full report, for people and orchestrators: 503 when the database cannot be reached or its
schema is behind the code's migrations (``app/schema.py``), and the checks features register
(Redis, the file store: "degraded" while one is out of reach, still 200). ``/readyz/node`` is
the load balancer's check: this node alone (its schema verdict, the last known one while the
database is away, and node checks), so an outage of a service every node shares is answered
by the app's own 503s with ``Retry-After``, not by a load balancer with no node left.

Each request gets an id the moment it enters the app
(``RequestIds``, a WSGI middleware, so a request refused by the first check still has one): a
sane incoming ``X-Request-ID`` (1-64 of ``A-Z a-z 0-9 . _ -``) is kept, else a new one. It is
sent back in the response's ``X-Request-ID`` and written in the access line: method, path
without the query string, status, duration, user id. Never bodies, query strings, cookies or
``Authorization`` headers. Every field is escaped with ``log_safe`` (control, format and
separator characters, spaces and backslashes become ``\\xNN``/``\\uNNNN``), so a request is
always exactly one line and no field can pose as another. For a streamed reply the duration is
the time to the response headers; the chat stores its own timings on the message.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request
from sqlalchemy import inspect, text

from app.schema import SchemaCheck, Verdict
from app.settings import ROOT

access_log = logging.getLogger("prompthub.access")
log = logging.getLogger(__name__)
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
ENVIRON_ID = "prompthub.request_id"
ENVIRON_STARTED = "prompthub.started"


def request_id() -> str:
    return request.environ.get(ENVIRON_ID, "-")


def log_safe(value: object, *, spaces: bool = False) -> str:
    """``value`` as one log field: every character that could end the line, hide text (bidi
    and zero-width characters) or split the field (spaces, unless ``spaces`` allows them in
    free text) is escaped, as is the backslash itself, so the escaping reads back
    unambiguously."""
    text_value = str(value)
    also = "\\" if spaces else "\\ "
    if text_value.isprintable() and not any(char in text_value for char in also):
        return text_value
    return "".join(_escape(char, also) for char in text_value)


def _escape(char: str, also: str) -> str:
    """Printable characters stay (unless in ``also``); others become ``\\xNN``/``\\uNNNN``."""
    if char.isprintable() and char not in also:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class RequestIds:
    """WSGI middleware: the request id (and start time) exist before Flask sees the request,
    and every response carries ``X-Request-ID``, whatever answered it."""

    def __init__(self, wsgi_app) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        rid = incoming if _SANE_ID.fullmatch(incoming) else uuid.uuid4().hex
        environ[ENVIRON_ID] = rid
        environ[ENVIRON_STARTED] = time.perf_counter()

        def start_with_id(status, headers, exc_info=None):
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append(("X-Request-ID", rid))
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start_with_id)


def _served_user() -> str:
    """The id of the user this request was served as, or "-". Only a user already loaded is
    logged (Flask-Login keeps it in ``g._login_user``): loading one just for the log would cost
    a query on every static file, and fail again when the database is what failed. The id is
    the row's identity, read without a query: a rollback in the request (a reply stored while
    the database went away) expires the row, and reading ``user.id`` would load it again, from
    a database that is not there: an error in the error's own response, a bare 500."""
    user = g.get("_login_user")
    if user is None or not user.is_authenticated:
        return "-"
    state = inspect(user, raiseerr=False)
    identity = state.identity if state is not None else None
    return str(identity[0]) if identity else "-"  # never get_id(): the session id, a credential


def init_app(app: Flask) -> None:
    app.wsgi_app = RequestIds(app.wsgi_app)

    @app.after_request
    def log_request(response: Response) -> Response:
        started = request.environ.get(ENVIRON_STARTED)
        duration_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        access_log.info(
            "request_id=%s method=%s path=%s status=%s duration_ms=%.1f user=%s",
            log_safe(request_id()),
            log_safe(request.method),
            log_safe(request.path),
            response.status_code,
            duration_ms,
            log_safe(_served_user()),
        )
        return response

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    checker = SchemaCheck(ROOT / "migrations")  # the code's heads: read once, here
    app.extensions["schema_check"] = checker

    @app.get("/readyz")
    def readyz():
        """The full report, for people and orchestrators: 503 when the database cannot be
        reached, its schema is behind the code, or a node check fails."""
        from app.extensions import db
        from app.transactions import rollback_quietly

        try:
            db.session.execute(text("SELECT 1"))
            schema = checker.check(db.session.connection())
        except Exception as exc:  # any failure to reach the database means "not ready"
            rollback_quietly()
            log.warning("readiness check failed: %s", type(exc).__name__)
            return {"status": "unavailable", "checks": {"database": type(exc).__name__}}, 503
        finally:
            db.session.remove()
        # Other parts report too (the turn broker: Redis; the file store). Shared services do
        # not make the process unready: it still serves, with less (see ``register_check``).
        checks = {"database": "ok", "schema": schema.value}
        ready = schema.ready
        for name, check, node in app.extensions.get("readiness_checks", []):
            checks[name] = check()
            ready = ready and (checks[name] == "ok" or not node)
        if not ready:
            return {"status": "unavailable", "checks": checks}, 503
        status = "ok" if all(v == "ok" for v in checks.values()) else "degraded"
        return {"status": status, "checks": checks}

    @app.get("/readyz/node")
    def node_ready():
        """The load balancer's check: this node, not the services every node shares. A
        database that cannot be reached does not fail it (every node would fail at once, and
        the load balancer would answer its own 503 instead of the app's JSON 503 with
        ``Retry-After``); the schema's last known verdict stands meanwhile."""
        schema = _node_schema(checker)
        checks, ready = {"schema": schema.value}, schema.ready
        for name, check, node in app.extensions.get("readiness_checks", []):
            if node:
                checks[name] = check()
                ready = ready and checks[name] == "ok"
        if not ready:
            return {"status": "unavailable", "checks": checks}, 503
        return {"status": "ok", "checks": checks}


def _node_schema(checker: SchemaCheck) -> Verdict:
    """The schema verdict for the node check: the kept one, else the database's (asked at most
    once per ``ASK_EVERY_SECONDS``), else, while the database cannot be reached, the last one
    it gave (none yet: ready, as the app answers 503s itself)."""
    from app.extensions import db
    from app.transactions import rollback_quietly

    if (fresh := checker.fresh()) is not None:
        return fresh
    if checker.may_ask():
        try:
            return checker.check(db.session.connection())
        except Exception as exc:  # the database is away: the last known verdict stands
            rollback_quietly()
            log.warning("node check: the database does not answer (%s)", type(exc).__name__)
        finally:
            db.session.remove()
    last = checker.last
    if last is None:
        return Verdict(True, "unknown: the database does not answer")
    return Verdict(last.ready, f"{last.value} (last known; the database does not answer)")


def register_check(app: Flask, name: str, check, *, node: bool = False) -> None:
    """``check()`` returns "ok" or what is wrong; ``/readyz`` reports it. A shared service's
    check (the default) makes the status "degraded", still 200: the process still serves, and
    the app answers what needs that service with its own 503. A ``node`` check is about this
    process alone (draining, say): not "ok" makes ``/readyz`` and the load balancer's
    ``/readyz/node`` answer 503."""
    app.extensions.setdefault("readiness_checks", []).append((name, check, node))
