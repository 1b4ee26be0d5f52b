"""Who a share link's visitor is: a random id in a signed cookie of its own (``ph_visitor``),
apart from the login session, with the links whose passcode the visitor has entered.

The cookie is signed with ``SECRET_KEY`` under its own salt (itsdangerous, as Flask signs its
session), so a visitor can neither forge another visitor's id nor unlock a link by editing it;
an unreadable or expired cookie is simply a new visitor. ``HttpOnly``, ``SameSite=Lax``,
``Secure`` like the session cookie (production, or a request over https), and its path is
``/s/``: no other page ever receives it. Lax means a page framing the chat from another *site*
gets no cookie in the frame (docs/openai-compatible.md, "Share link")."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from flask import Response, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

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


def save(response: Response, visitor: Visitor) -> Response:
    """Write the visitor's cookie (a page always does: it renews the 30 days)."""
    response.set_cookie(
        COOKIE,
        _serializer().dumps({"v": visitor.id, "u": visitor.unlocked}),
        max_age=MAX_AGE,
        path="/s/",
        httponly=True,
        samesite="Lax",
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure,
    )
    return response
