"""Seeded traffic for the metrics tests and benchmark: conversations and finished replies written
straight into the tables (SQLAlchemy Core, many rows per statement), with the timings, tokens,
statuses and ratings a test wants. Call inside an app context."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select

from app.extensions import db
from app.models import Conversation, Message, PromptVersion
from app.models.base import utcnow


def version_id(project_id: int, number: int) -> int:
    return db.session.scalar(
        select(PromptVersion.id).where(
            PromptVersion.project_id == project_id, PromptVersion.version == number
        )
    )


def add_conversation(project_id: int, *, version: int | None = None, model=None) -> int:
    """A conversation, pinned to version number ``version`` (and overriding its model) if given."""
    pinned = version_id(project_id, version) if version is not None else None
    conversation = Conversation(
        project_id=project_id, title="Seeded", prompt_version_id=pinned, model=model
    )
    db.session.add(conversation)
    db.session.commit()
    return conversation.id


def reply(
    conversation_id: int, prompt_version_id: int, created_at: datetime | None = None, **values
):
    """One assistant row (a dict for ``add_rows``): complete, no rating, unless ``values`` say."""
    return {
        "conversation_id": conversation_id,
        "role": "assistant",
        "content": "A seeded reply.",
        "status": "complete",
        "prompt_version_id": prompt_version_id,
        "provider": "openai",
        "model": "gpt-4o-mini-2024-07-18",
        "fallback": False,
        "tokens_in": None,
        "tokens_out": None,
        "ttft_ms": None,
        "total_ms": None,
        "rating": None,
        "created_at": created_at or utcnow(),
        **values,
    }


def add_rows(rows: list[dict], chunk: int = 5000) -> None:
    """Insert message rows, ``chunk`` per executemany; commits."""
    for start in range(0, len(rows), chunk):
        db.session.execute(insert(Message), rows[start : start + chunk])
    db.session.commit()
