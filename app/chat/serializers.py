"""The JSON of conversations and messages: one serializer per model family, used by the API's
answers and by the events of a turn (which are rendered by the process generating it)."""

from __future__ import annotations

from app.chat.feedback import RATING_NAMES
from app.chat.render import ending, meta_line, render_markdown
from app.models import Role


def conversation_json(conversation) -> dict:
    return {
        "id": conversation.id,
        "project_id": conversation.project_id,
        "title": conversation.title,
        "pinned_version": (
            conversation.pinned_version.version if conversation.pinned_version else None
        ),
        "model": conversation.model,
        "arm": conversation.arm,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }


def message_json(message, *, html: bool = False) -> dict:
    data = {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "parent_id": message.parent_id,
        # Its versions (itself included) when it was edited or regenerated; set by the message
        # list (the branch being viewed), None elsewhere (a turn's events).
        "siblings": getattr(message, "siblings", None),
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "provider": message.provider,
        "model": message.model,
        "fallback": message.fallback,
        "prompt_version": message.prompt_version.version if message.prompt_version else None,
        "tokens_in": message.tokens_in,
        "tokens_out": message.tokens_out,
        "ttft_ms": message.ttft_ms,
        "total_ms": message.total_ms,
        "error": message.error,
        "error_kind": message.error_kind,
        "error_reason": _reason(message),
        "context_files": message.context_files or [],
        "created_at": message.created_at.isoformat(),
        "feedback": feedback_json(message),
    }
    if html and message.role == Role.ASSISTANT:
        data["html"] = render_markdown(message.content)
        data["meta"] = meta_line(message)  # the line under the bubble, as the page renders it
    return data


def _reason(message) -> str | None:
    end = ending(message)
    return end.reason if end else None


def feedback_json(message) -> dict | None:
    """The owner's feedback on a reply, or None (always None for a user's message).

    ``rating`` and ``rated_at`` are written together (``app/chat/feedback.py``)."""
    if message.rating is None:
        return None
    return {
        "rating": RATING_NAMES[message.rating],
        "comment": message.feedback,
        "rated_at": message.rated_at.isoformat(),
    }
