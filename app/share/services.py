"""Share link rules: create (token, passcode, expiry, embedding origins, budget), list, revoke;
find a live link by its token; a visitor's turn and history.

A link is read from its row on every request (``live_link``): a revoked or expired link is a
404 at the visitor's next request, on every node, mid-conversation included. A visitor's turn
runs as the link's owner (``chat.start.visitor``): the owner's spending budgets, the project's
serving version, canary and metrics apply; the link's own ``monthly_tokens`` is checked first
(``check_budget``). A visitor reaches only conversations of their own on that link
(``chat.conversations.visitors_conversation``): any other id is the same 404.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import distinct, func, select

from app import usage
from app.chat import start
from app.chat.conversations import list_visitor_messages
from app.errors import AppError, NotFound, ValidationFailed
from app.extensions import db
from app.models import Conversation, Message, ShareLink, User
from app.models.base import utcnow
from app.projects.services import get_project_for
from app.security import PASSWORD_MAX_BYTES, hash_password, verify_password

ORIGINS_MAX = 10
PASSCODE_MIN = 4
PASSCODE_MAX_BYTES = PASSWORD_MAX_BYTES  # bcrypt's limit
_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
_LOCAL = {"localhost", "127.0.0.1"}


class LinkBudgetExceeded(AppError):
    status, code = 429, "share_budget_exceeded"
    message = "This chat has used its budget for the month."


class PasscodeRequired(AppError):
    status, code = 403, "passcode_required"
    message = "This chat needs its passcode: reload the page to enter it."


# --- the owner's side --------------------------------------------------------------------------


def create_link(
    *,
    user: User,
    project_id: int,
    expires_in_days: int | None = None,
    passcode: str | None = None,
    allowed_origins: str | list[str] | None = None,
    monthly_tokens: int | None = None,
) -> ShareLink:
    project = get_project_for(user, project_id)
    fields: dict[str, str] = {}
    if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
        fields["expires_in_days"] = "Between 1 and 3650 days, or none."
    passcode = passcode or None
    if passcode is not None:
        size = len(passcode.encode("utf-8"))
        if len(passcode) < PASSCODE_MIN or size > PASSCODE_MAX_BYTES:
            fields["passcode"] = (
                f"Use {PASSCODE_MIN} to {PASSCODE_MAX_BYTES} bytes, or leave it empty."
            )
    origins, problem = clean_origins(allowed_origins)
    if problem:
        fields["allowed_origins"] = problem
    if monthly_tokens is not None and not 1 <= monthly_tokens <= 2_000_000_000:
        fields["monthly_tokens"] = "A positive number of tokens, or none."
    if fields:
        raise ValidationFailed(fields=fields)
    active = db.session.scalar(
        select(func.count()).where(
            ShareLink.project_id == project.id, ShareLink.revoked_at.is_(None)
        )
    )
    most = current_app.config["SHARE_LINKS_MAX"]
    if active >= most:
        raise ValidationFailed(
            f"This project has {most} active share links, the most allowed. Revoke one first.",
            code="too_many_share_links",
        )
    link = ShareLink(
        project_id=project.id,
        token=secrets.token_urlsafe(16),
        passcode_hash=hash_password(passcode) if passcode else None,
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
        allowed_origins=" ".join(origins) or None,
        monthly_tokens=monthly_tokens,
    )
    db.session.add(link)
    db.session.commit()
    return link


def clean_origins(value: str | list[str] | None) -> tuple[list[str], str | None]:
    """The origins allowed to embed a link (``https://host[:port]``, lower case, no path; plain
    ``http`` only for localhost), and the problem with ``value`` if any. They go into a
    ``frame-ancestors`` header, so nothing but a scheme, a host name and a port gets through."""
    items = value.split() if isinstance(value, str) else [str(v).strip() for v in value or []]
    origins: list[str] = []
    for item in items:
        try:
            parts = urlsplit(item.rstrip("/"))
            port = parts.port
        except ValueError:
            return [], f"“{item[:80]}” is not an origin such as https://example.com."
        host = (parts.hostname or "").lower()
        scheme = parts.scheme.lower()
        if (
            scheme not in ("https", "http")
            or (scheme == "http" and host not in _LOCAL)
            or not _HOST.fullmatch(host)
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            return [], (
                f"“{item[:80]}” is not an origin such as https://example.com (https, no path; "
                "http only for localhost)."
            )
        origin = f"{scheme}://{host}" + (f":{port}" if port else "")
        if origin not in origins:
            origins.append(origin)
    if len(origins) > ORIGINS_MAX:
        return [], f"At most {ORIGINS_MAX} origins."
    return origins, None


def list_links(*, user: User, project_id: int) -> list[ShareLink]:
    """The project's links, newest first, revoked ones included."""
    project = get_project_for(user, project_id)
    return list(
        db.session.scalars(
            select(ShareLink)
            .where(ShareLink.project_id == project.id)
            .order_by(ShareLink.id.desc())
        )
    )


def get_link_for(user: User, project_id: int, link_id: int) -> ShareLink:
    project = get_project_for(user, project_id)
    link = db.session.get(ShareLink, link_id)
    if link is None or link.project_id != project.id:
        raise NotFound("No such share link.")
    return link


def revoke_link(*, user: User, project_id: int, link_id: int) -> ShareLink:
    """Refuse the link from its next request on (every node reads the row); its conversations
    stay in the project. Revoking twice is the same as once."""
    link = get_link_for(user, project_id, link_id)
    if link.revoked_at is None:
        link.revoked_at = utcnow()
        db.session.commit()
    return link


@dataclass(frozen=True)
class LinkUse:
    """What a link's visitors did: conversations, distinct visitors, tokens this month."""

    conversations: int = 0
    visitors: int = 0
    tokens_this_month: int = 0


def usage_of(project_id: int) -> dict[int, LinkUse]:
    """Each link of the project that has conversations: its ``LinkUse`` (two queries)."""
    counts = db.session.execute(
        select(
            Conversation.share_link_id,
            func.count(Conversation.id),
            func.count(distinct(Conversation.visitor)),
        )
        .where(Conversation.project_id == project_id, Conversation.share_link_id.is_not(None))
        .group_by(Conversation.share_link_id)
    ).all()
    tokens = dict(
        db.session.execute(
            select(Conversation.share_link_id, usage.reply_tokens())
            .join(Message, Message.conversation_id == Conversation.id)
            .where(
                Conversation.project_id == project_id,
                Conversation.share_link_id.is_not(None),
                Message.created_at >= usage.month_bounds()[0],
            )
            .group_by(Conversation.share_link_id)
        ).all()
    )
    return {
        link_id: LinkUse(n, visitors, int(tokens.get(link_id) or 0))
        for link_id, n, visitors in counts
    }


# --- the visitor's side ------------------------------------------------------------------------


def live_link(token: str) -> ShareLink:
    """The link ``token`` names while it may be used; ``NotFound`` once revoked or expired,
    and for a token that names nothing (all the same 404)."""
    link = db.session.scalar(select(ShareLink).where(ShareLink.token == token))
    if (
        link is None
        or link.revoked_at is not None
        or (link.expires_at is not None and link.expires_at <= utcnow())
    ):
        raise NotFound("This chat link does not exist, has expired or was turned off.")
    return link


def passcode_matches(link: ShareLink, passcode: str | None) -> bool:
    """One bcrypt check, whatever is given (the timing says nothing)."""
    return verify_password(passcode or "", link.passcode_hash)


def check_budget(link: ShareLink) -> None:
    """A link over its monthly token budget: 429 ``share_budget_exceeded`` until the month
    ends (``Retry-After``)."""
    if link.monthly_tokens is None:
        return
    if usage.tokens_this_month(Conversation.share_link_id == link.id) >= link.monthly_tokens:
        wait = max(1, int((usage.month_bounds()[1] - utcnow()).total_seconds()))
        raise LinkBudgetExceeded(headers={"Retry-After": str(wait)})


def _owner(link: ShareLink) -> User:
    return db.session.scalar(select(User).where(User.id == link.project.owner_id))


def visitor_turn(
    *, link: ShareLink, visitor: str, message: str | None, conversation_id: int | None = None
) -> start.Turn:
    """Start a visitor's turn: a new conversation, or one of theirs on this link continued."""
    check_budget(link)
    return start.visitor(
        user=_owner(link),
        project_id=link.project_id,
        message=message,
        share_link_id=link.id,
        visitor=visitor,
        conversation_id=conversation_id,
    )


def visitor_messages(*, link: ShareLink, visitor: str, conversation_id: int) -> list[Message]:
    """The branch being viewed of one of the visitor's conversations, oldest first (its newest
    200 messages)."""
    return list_visitor_messages(
        share_link_id=link.id, visitor=visitor, conversation_id=conversation_id, limit=200
    )


def latest_conversation_id(*, link: ShareLink, visitor: str) -> int | None:
    """The visitor's most recently active conversation on this link (the page opens it)."""
    return db.session.scalar(
        select(Conversation.id)
        .where(Conversation.share_link_id == link.id, Conversation.visitor == visitor)
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .limit(1)
    )
