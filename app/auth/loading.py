"""Who is calling: session cookie (pages) or ``Authorization: Bearer`` (API clients).

Rules, applied to the whole app:
- An ``/api/`` request with a Bearer header is authenticated by the token alone: the session is
  ignored, a bad token is a 401 JSON error, and CSRF is not checked (no ambient credential).
  Pages ignore Bearer headers: they are for API clients; pages use the session.
- Every other state-changing request that is authenticated by the session cookie, form posts and
  ``fetch`` alike, must carry a CSRF token (form field or ``X-CSRFToken`` header).
- Anonymous JSON calls under ``/api/`` (register, login) skip CSRF: they carry no cookie
  credential, and they must be ``application/json``, which a cross-site form cannot send.
"""

from __future__ import annotations

from flask import Flask, g, redirect, request, url_for
from flask_login import current_user

from app.auth import services
from app.errors import Unauthorized, wants_json
from app.extensions import csrf, login_manager
from app.security import TokenError

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}


def bearer_token() -> str | None:
    """The bearer token of an API request ("" when the header is empty), else None."""
    if not wants_json():
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or ""


@login_manager.user_loader
def load_session_user(session_id: str):
    if bearer_token() is not None:
        return None  # the token alone decides
    return services.user_for_session_id(session_id)


@login_manager.request_loader
def load_token_user(req):
    token = bearer_token()
    if token is None:
        return None
    try:
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
            return None
        if request.method in SAFE_METHODS:
            return None
        if wants_json() and not current_user.is_authenticated:
            return None
        csrf.protect()
        return None
