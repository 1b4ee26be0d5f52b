"""Feedback on assistant replies: 👍/👎 with an optional comment, by the conversation's owner.

One rating per reply (``messages.rating``: +1 / -1, ``feedback``: the comment, ``rated_at``),
changeable any number of times and removable. Only an assistant reply that has finished can be
rated: a user's message, or a reply still being written (``streaming`` / ``stopping``), is a
422. One whose lease ran out (its process died) is marked ``interrupted`` first, as the chat
page does, and can be rated. The reply is found through its conversation's project owner, so
another user's reply is a 404 like everything else, before anything in the request is looked
at.

The API speaks words, the database numbers: ``"up"`` is +1, ``"down"`` is -1.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.chat import replies
from app.errors import NotFound, ValidationFailed
from app.extensions import db
from app.models import Conversation, Message, Project, Role, User
from app.models.base import utcnow

COMMENT_MAX = 2000
RATINGS = {"up": 1, "down": -1}
RATING_NAMES = {value: name for name, value in RATINGS.items()}
# ``rating`` left out of a request (``null`` is a value: it removes the feedback).
MISSING: Any = object()


def get_message_for(user: User, message_id: int) -> Message:
    """Message ``message_id`` in one of ``user``'s conversations, else ``NotFound``."""
    found = db.session.scalar(
        select(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(Project, Project.id == Conversation.project_id)
        .where(Message.id == message_id, Project.owner_id == user.id)
    )
    if found is None:
        raise NotFound("No such message.")
    return found


def _ratable(user: User, message_id: int) -> Message:
    message = get_message_for(user, message_id)
    if message.role != Role.ASSISTANT:
        raise ValidationFailed("Only assistant replies can be rated.", code="not_a_reply")
    if message.status in replies.LIVE and replies.expire_stale([message]):
        db.session.refresh(message)  # its process died: ``interrupted`` now, and finished
    if message.status in replies.LIVE:
        raise ValidationFailed(
            "The reply is still being written; rate it once it has finished.",
            code="reply_not_finished",
        )
    return message


def _rating(value: Any) -> int | None:
    if value is MISSING:
        raise ValidationFailed(fields={"rating": 'Required: "up", "down" or null.'})
    if value is None:
        return None
    if not isinstance(value, str) or value not in RATINGS:
        raise ValidationFailed(fields={"rating": 'Must be "up", "down" or null.'})
    return RATINGS[value]


def _comment(value: Any) -> str | None:
    """The comment as stored: stripped, None when blank; at most ``COMMENT_MAX`` characters."""
    if not isinstance(value, str):
        raise ValidationFailed(fields={"comment": "Must be a string."})
    value = value.strip()
    if len(value) > COMMENT_MAX:
        raise ValidationFailed(
            fields={"comment": f"Use at most {COMMENT_MAX:,} characters (this has {len(value):,})."}
        )
    return value or None


def rate_reply(
    *, user: User, message_id: int, rating: Any = MISSING, comment: Any = None
) -> Message:
    """Set (or change) the feedback on a finished reply, or remove it with ``rating=None``.

    ``rating``: ``"up"``, ``"down"`` or ``None`` (required). ``comment``: ``None`` keeps the
    stored comment (so a vote alone never loses it), a blank string removes it. A comment needs
    a rating: removing the rating removes the comment too."""
    message = _ratable(user, message_id)
    value = _rating(rating)
    text = None if comment is None else _comment(comment)
    if value is None:
        if text:
            raise ValidationFailed(
                fields={"comment": 'A comment goes with a rating: "up" or "down".'}
            )
        return _clear(message)
    message.rating = value
    if comment is not None:
        message.feedback = text
    message.rated_at = utcnow()
    db.session.commit()
    return message


def clear_feedback(*, user: User, message_id: int) -> Message:
    """Remove the rating and the comment; a reply without feedback is left as it is."""
    return _clear(_ratable(user, message_id))


def _clear(message: Message) -> Message:
    message.rating = None
    message.feedback = None
    message.rated_at = None
    db.session.commit()
    return message
