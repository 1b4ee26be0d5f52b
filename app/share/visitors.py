"""Who a share link's visitor is: a random id in a signed cookie of its own (``ph_visitor``),
apart from the login session, with the links whose passcode the visitor has entered.

The cookie is signed with ``SECRET_KEY`` under its own salt (itsdangerous, as Flask signs its
session), so a visitor can neither forge another visitor's id nor unlock a link by editing it;
an unreadable or expired cookie is simply a new visitor. ``HttpOnly``, ``SameSite=Lax``,
and its path is ``/s/``: no other page ever receives it.

Embedding on another site: a page of another *site* framing the chat gets a cookie in the frame
only if it is ``SameSite=None``, which browsers accept only ``Secure``. So where the site is a
secure context (https: a request over https, or ``SESSION_COOKIE_SECURE``) the cookie is
``SameSite=None; Secure; Partitioned``: sent in frames of any site the link allows
(``frame-ancestors``), and kept apart per embedding site (CHIPS: a visitor of the chat on two
sites is two visitors, and no site can follow a visitor across sites). Elsewhere (plain http)
it stays ``SameSite=Lax``. Because a ``SameSite=None`` cookie travels with cross-site requests,
the visitor's writes are not protected by it: each carries a **visitor token**, an HMAC of the
visitor's id and the link under ``SECRET_KEY`` that only the page itself shows
(``form_token``), checked by ``check_token``. The login session's CSRF token is not used on
these pages (its cookie is ``Lax`` and would not reach a frame of another site)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from flask import Response, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.errors import AppError

COOKIE = "ph_visitor"
SALT = "prompthub-share-visitor"
MAX_AGE = 60 * 60 * 24 * 30  # 30 days, renewed on each visit to a link's page
UNLOCKED_MAX = 20  # links remembered as unlocked, newest kept


@dataclass
class Visitor:
    id: str
    unlocked: list[int] = field(default_factory=list)
    fresh: bool = False  # the request came without a valid cookie: a new visitor

    def has_unlocked(self, link_id: int) -> bool:
        return link_id in self.unlocked

    def unlock(self, link_id: int) -> None:
        if link_id not in self.unlocked:
            self.unlocked = [*self.unlocked, link_id][-UNLOCKED_MAX:]


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=SALT)


def current() -> Visitor:
    """The request's visitor; a new one (``fresh``) without a valid cookie."""
    raw = request.cookies.get(COOKIE)
    if raw:
        try:
            data = _serializer().loads(raw, max_age=MAX_AGE)
        except BadSignature:
            data = None
        if (
            isinstance(data, dict)
            and isinstance(data.get("v"), str)
            and len(data["v"]) == 32
            and isinstance(data.get("u"), list)
            and all(isinstance(i, int) for i in data["u"])
        ):
            return Visitor(data["v"], data["u"][-UNLOCKED_MAX:])
    return Visitor(secrets.token_hex(16), fresh=True)


def _secure_site() -> bool:
    """Whether the site is served over https, where a ``Secure`` cookie is kept."""
    return request.is_secure or bool(current_app.config.get("SESSION_COOKIE_SECURE"))


def save(response: Response, visitor: Visitor) -> Response:
    """Write the visitor's cookie (a page always does: it renews the 30 days)."""
    embeddable = _secure_site()
    response.set_cookie(
        COOKIE,
        _serializer().dumps({"v": visitor.id, "u": visitor.unlocked}),
        max_age=MAX_AGE,
        path="/s/",
        httponly=True,
        samesite="None" if embeddable else "Lax",
        secure=embeddable,
        partitioned=embeddable,
    )
    return response


class BadVisitorToken(AppError):
    status, code = 400, "csrf_failed"
    message = "This page has expired: reload it and try again."


def form_token(visitor: Visitor, link_id: int) -> str:
    """The token the link's page shows its visitor, for their writes (the ``csrf-token`` meta
    and the passcode form's ``csrf_token`` field)."""
    text = f"share-visitor:{link_id}:{visitor.id}".encode()
    return hmac.new(current_app.secret_key.encode(), text, hashlib.sha256).hexdigest()


def check_token(visitor: Visitor, link_id: int) -> None:
    """A visitor's write must carry their page's token (``X-CSRFToken`` or the form's
    ``csrf_token``); a visitor without a cookie has no page yet."""
    given = request.headers.get("X-CSRFToken") or request.form.get("csrf_token") or ""
    if visitor.fresh or not hmac.compare_digest(given, form_token(visitor, link_id)):
        raise BadVisitorToken()
