"""The JSON of conversations and messages: one serializer per model family, used by the API's
answers and by the events of a turn (which are rendered by the process generating it)."""

from __future__ import annotations

from app.chat.render import render_markdown
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
        "context_files": message.context_files or [],
        "created_at": message.created_at.isoformat(),
    }
    if html and message.role == Role.ASSISTANT:
        data["html"] = render_markdown(message.content)
    return data
