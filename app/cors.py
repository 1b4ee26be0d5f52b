"""Cross-origin access to the JSON API (CORS), for a browser app served from another origin.

Off unless ``CORS_ORIGINS`` names origins: then no response carries an ``Access-Control-*``
header. On, Flask-CORS answers for ``/api`` and ``/api/…`` only (pages never get CORS headers),
and only for a request whose ``Origin`` is exactly one of the configured origins (compared
case-insensitively, each as an escaped pattern, so no entry is ever read as a regular
expression), or for any origin with ``*`` (then the header is a literal ``*``).

What a cross-origin client may do, and why:

- **Bearer tokens only.** ``Access-Control-Allow-Credentials`` is never sent, so a browser never
  lets a page read an answer to a request that carried cookies; and the server never honours a
  cookie on a request whose ``Origin`` is another origin (``app/auth/loading.py``), whatever
  ``CORS_ORIGINS`` says.
- **Preflight without authentication.** Browsers send a preflight (``OPTIONS`` with ``Origin``
  and ``Access-Control-Request-Method``) without credentials, so ``require_login`` and the
  bearer rule let exactly those through (``is_preflight``); Flask's automatic ``OPTIONS``
  answers 200. Any other ``OPTIONS`` is an ordinary request: 401 without a user.
- **Methods** the API uses: GET, HEAD, POST, PUT, PATCH, DELETE. **Request headers**:
  ``Authorization`` and ``Content-Type`` (JSON bodies), ``Last-Event-ID`` (resuming a turn's
  events) and ``X-Request-ID`` (a client's own id for the logs).
- **Exposed response headers** (a page can read only these beyond the CORS-safelisted ones):
  ``Retry-After`` (429, 503), the ``X-RateLimit-*`` headers, ``Content-Disposition`` (a
  download's file name) and ``X-Request-ID`` (what to quote in a bug report).
- **Preflight cache**: ``Access-Control-Max-Age`` 7200 s, Chromium's ceiling (Firefox allows
  a day). The cache only remembers which methods and headers are allowed; every real answer
  still carries its own ``Access-Control-Allow-Origin``, so removing an origin from the list
  takes effect at once.
- ``Vary: Origin`` on every ``/api`` answer while CORS is on: whether the allow header is
  there depends on the request's ``Origin`` (Flask-CORS adds it only for several origins).

Rate limits do not count preflights (``app/limits.py``): a page's preflights are not requests
for work, and counting them per address would let them use up a user's budget.
"""

from __future__ import annotations

import re

from flask import Flask, Response, request
from flask_cors import CORS

from app.errors import wants_json

API_PATHS = re.compile(r"/api(/|$)")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOW_HEADERS = ("Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID")
EXPOSE_HEADERS = (
    "Content-Disposition",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-Request-ID",
)
MAX_AGE_SECONDS = 7200


def is_preflight() -> bool:
    """Whether the current request is a CORS preflight (what a browser sends, without
    credentials, before a cross-origin request that is not "simple")."""
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def _exactly(origin: str) -> re.Pattern[str]:
    """``origin`` as a pattern that matches only itself. Flask-CORS reads a plain string with
    ``[`` or ``*`` in it as a regular expression (an IPv6 origin has brackets)."""
    return re.compile(re.escape(origin) + r"\Z", re.IGNORECASE)


def init_app(app: Flask) -> None:
    origins: tuple[str, ...] = app.config["CORS_ORIGINS"]
    if not origins:
        return
    any_origin = origins == ("*",)
    CORS(
        app,
        resources={API_PATHS: {}},
        origins="*" if any_origin else [_exactly(origin) for origin in origins],
        send_wildcard=any_origin,
        methods=list(METHODS),
        allow_headers=list(ALLOW_HEADERS),
        expose_headers=list(EXPOSE_HEADERS),
        max_age=MAX_AGE_SECONDS,
        supports_credentials=False,
        # Without an Origin header a request is not a CORS request: nothing to add.
        always_send=False,
        vary_header=False,  # ours below, on every /api answer
        # Our error handlers turn every exception into a response, and after_request
        # functions run on those; no need to wrap the app's exception handling.
        intercept_exceptions=False,
        allow_private_network=False,
    )

    @app.after_request
    def vary_on_origin(response: Response) -> Response:
        if wants_json():
            response.vary.add("Origin")
        return response
