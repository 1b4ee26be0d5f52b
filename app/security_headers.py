"""Security headers on every response.

The Content-Security-Policy allows scripts, styles and connections from our own origin only (no
inline script or style anywhere in the templates), no plugins, and no framing (but a share
link's page, which its owner may let chosen origins embed: ``framed_by``). A view may set a
stricter header of its own (downloads do: ``default-src 'none'; sandbox``); ``setdefault``
keeps it. HSTS is sent only on HTTPS requests (behind a proxy, set ``TRUST_PROXY`` so
``X-Forwarded-Proto`` counts). ``Cache-Control: no-store`` goes on every response except static
files and the public OpenAPI document.
"""

from __future__ import annotations

from flask import Flask, Response, request

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"


def framed_by(origins: list[str]) -> dict[str, str]:
    """The headers of a page that may be framed by our own origin and ``origins`` (a share
    link's page): the same policy with ``frame-ancestors 'self' <origins>`` instead of
    ``'none'``, and ``X-Frame-Options: SAMEORIGIN`` for browsers without CSP (every current
    browser obeys ``frame-ancestors`` and ignores X-Frame-Options when both are sent). Set by
    the view, so ``setdefault`` below keeps them."""
    ancestors = " ".join(["'self'", *origins])
    return {
        "Content-Security-Policy": CSP.replace(
            "frame-ancestors 'none'", f"frame-ancestors {ancestors}"
        ),
        "X-Frame-Options": "SAMEORIGIN",
    }


# The only responses that are the same for everyone: static files (they keep Flask's caching)
# and the public API document. Everything else may depend on who asks (pages, API answers,
# downloads) or carries the session's CSRF token (the login and register pages too).
SHARED_ENDPOINTS = frozenset({"static", "api.openapi"})


def init_app(app: Flask) -> None:
    if app.config.get("TRUST_PROXY"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        if request.endpoint not in SHARED_ENDPOINTS:
            # Added to what a view set (a download's ``no-cache``, the chat stream's): neither
            # the browser's disk cache nor a shared proxy may keep a private answer.
            response.cache_control.no_store = True
        return response
