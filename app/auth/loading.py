"""Who is calling: session cookie (pages) or ``Authorization: Bearer`` (API clients).

Rules, applied to the whole app:
- An ``/api/`` request with a Bearer header is authenticated by the token alone: the session is
  ignored, a bad token is a 401 JSON error, and CSRF is not checked (no ambient credential).
  Pages ignore Bearer headers: they are for API clients; pages use the session.
- Every other state-changing request that is authenticated by the session cookie, form posts and
  ``fetch`` alike, must carry a CSRF token (form field or ``X-CSRFToken`` header).
- Anonymous JSON calls under ``/api/`` (register, login) skip CSRF: they carry no cookie
  credential, and they must be ``application/json``, which a cross-site form cannot send.
- Beside the token (defence in depth), the same requests are refused with a 403
  ``cross_origin`` when their ``Origin`` header, or without one their ``Referer``, names another
  origin (scheme, host, port) than the request's own (``TRUST_PROXY``: the forwarded scheme and
  host, through ProxyFix). ``Origin: null`` and an unreadable value count as another origin.
  Requests naming neither are left to the token alone (old browsers, privacy tools). Under
  ``/api/`` the rule applies to requests that carry a login session (a session cookie naming
  one, valid or not): an anonymous JSON call (register, login) from another origin is allowed.
- Cookies never authorise a cross-origin request: when the ``Origin`` header names another
  origin, the session is not loaded at all, for reads too and whatever ``CORS_ORIGINS`` allows,
  so such a request is anonymous unless it sends a bearer token (``/api/``: 401). Browsers
  send ``Origin`` on every cross-origin ``fetch`` and on every non-GET request, never on a
  same-origin GET or a navigation, so links into the app from other sites still find the user
  logged in.
- A CORS preflight (``app/cors.py``) is answered without authentication: its bearer header, if
  any, is ignored.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, current_app, g, redirect, request, session, url_for
from flask_login import current_user

from app.auth import services
from app.cors import is_preflight
from app.errors import Forbidden, Unauthorized, wants_json
from app.extensions import csrf, login_manager
from app.keys import services as keys
from app.security import TokenError

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
DEFAULT_PORTS = {"http": 80, "https": 443}


def bearer_token() -> str | None:
    """The bearer token of an API request ("" when the header is empty), else None. A preflight
    has none: it is answered the same for everyone."""
    if not wants_json() or is_preflight():
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or ""


def origin_of(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) URL, default ports filled in; None if unreadable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def from_another_origin() -> bool:
    """Whether the request's ``Origin`` (or, without one, ``Referer``) names another origin than
    its own. False when it names neither."""
    claimed = request.headers.get("Origin") or request.headers.get("Referer")
    if not claimed:
        return False
    return origin_of(claimed) != origin_of(request.host_url)


def origin_header_is_foreign() -> bool:
    """Whether the request's ``Origin`` header names another origin than its own (``null`` and
    unreadable values included). The ``Referer`` does not count here: a link followed from
    another site is a navigation, not a cross-origin request."""
    claimed = request.headers.get("Origin")
    return bool(claimed) and origin_of(claimed) != origin_of(request.host_url)


def sends_login_session() -> bool:
    """Whether the request carries a session cookie that names a login session (valid or not)."""
    return "_user_id" in session


@login_manager.user_loader
def load_session_user(session_id: str):
    if bearer_token() is not None or request.path.startswith(keys.OPENAI_PREFIX):
        return None  # the token alone decides; /v1 takes no cookies
    if origin_header_is_foreign():
        return None  # cookies never authorise a cross-origin request
    return services.user_for_session_id(session_id)


@login_manager.request_loader
def load_token_user(req):
    token = bearer_token()
    if token is None:
        return None
    try:
        if keys.is_key(token):
            g.api_key, user = keys.key_for(token)
            return user
        return services.user_for_token(token)
    except TokenError as exc:
        g.token_error = exc
        return None


@login_manager.unauthorized_handler
def unauthorized():
    if wants_json():
        err = g.get("token_error")
        if err is not None:
            raise Unauthorized(err.message, code=err.code)
        raise Unauthorized("Log in or send a bearer token.", code="unauthorized")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def init_app(app: Flask) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Log in to see that page."
    login_manager.login_message_category = "info"

    @app.before_request
    def authenticate_and_check_csrf():
        token = bearer_token()
        if token is not None:
            if not current_user.is_authenticated:
                err = g.get("token_error") or TokenError("token_invalid", "The token is not valid.")
                raise Unauthorized(err.message, code=err.code)
            if (key := g.get("api_key")) is not None:
                keys.check_scope(key, request.path, request.endpoint, request.method)
            return None
        if request.path.startswith(keys.OPENAI_PREFIX):
            raise Unauthorized("Send an API key: Authorization: Bearer phk_…", code="key_missing")
        if request.method in SAFE_METHODS:
            return None
        # Pages: every write from another site. API: a write that carries a login session
        # (the session itself is not loaded for it, see load_session_user).
        if from_another_origin() and (not wants_json() or sends_login_session()):
            raise Forbidden(
                "This request came from another site, so it was refused. "
                "Go back to PromptHub and try again from there.",
                code="cross_origin",
            )
        if wants_json() and not current_user.is_authenticated:
            return None  # anonymous JSON (register, login): no credential to protect
        view = current_app.view_functions.get(request.endpoint or "")
        if getattr(view, "checks_own_csrf", False):
            return None  # a token of its own (``forms.checks_own_csrf``)
        csrf.protect()
        return None
