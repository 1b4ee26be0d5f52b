"""Conversations and their messages: one row per message, never a growing JSON array.

A user's message is committed before the provider is called, together with the assistant's row
in state ``streaming`` under a lease. While the reply streams, checkpoints store the text so far
and renew the lease; when the stream ends, however it ends, the row gets its final state
(``complete``, ``incomplete`` after a Stop or a drop, ``error`` when no text arrived). A row whose
lease ran out (its process died) becomes ``interrupted`` with its last checkpoint.
``(conversation_id, id)`` is indexed, so paging a long conversation costs the same as a short one.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, CreatedAtMixin, UTCDateTime, utcnow
from app.models.prompt import PromptVersion


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class MessageStatus(StrEnum):
    STREAMING = "streaming"  # a reply being generated; its lease says its process is alive
    STOPPING = "stopping"  # Stop was asked for; the generating process ends it as incomplete
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"  # text arrived, then a failure, a Stop or a dropped client
    ERROR = "error"  # nothing arrived
    INTERRUPTED = "interrupted"  # its process died (the lease ran out); keeps its last checkpoint


class Arm(StrEnum):
    """Why a conversation is served by the version it is (``conversations.arm``)."""

    PINNED = "pinned"  # the user started it on a chosen version ("New chat with v5", Compare)
    CANDIDATE = "candidate"  # the canary sent it to the candidate: pinned to that version
    PRODUCTION = "production"  # a canary was running and kept it on production (follows it)


class TitleState(StrEnum):
    """Where a conversation's model-written title stands (``Conversation.title_state``)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class Conversation(CreatedAtMixin, Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_project_updated", "project_id", "updated_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    # Pinned: every reply uses this version (and ``model`` when set, overriding the version's)
    # whatever becomes active later. None: the project's active version ("production").
    prompt_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("prompt_versions.id", ondelete="SET NULL")
    )
    model: Mapped[str | None] = mapped_column(String(120))
    arm: Mapped[str | None] = mapped_column(String(16))  # Arm; None: no canary, not pinned
    # The last message of the branch being viewed (app/chat/branches.py): the page, the message
    # API and the model see the path from the first message to it. No foreign key (messages
    # point at conversations already); a missing or stale id means the newest message.
    leaf_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
    # The model-written title (app/chat/titles.py): ``pending`` while the conversation keeps
    # its automatic title and a ``title`` job may still write one; ``done`` once a job ran
    # (titled, renamed meanwhile, or skipped); ``failed`` after ``title_attempts`` failed
    # calls; None: never asked (Compare and evaluation conversations, titles off, rows from
    # before 0012). ``title_claimed_at`` is the running job's lease.
    title_state: Mapped[str | None] = mapped_column(String(16), index=True)
    title_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    title_attempts: Mapped[int] = mapped_column(
        SmallInteger, default=0, server_default=text("0"), nullable=False
    )
    # Template variable values set for this conversation (docs/templates.md): set when it
    # starts (the call's ``variables``), changed from the chat page's side panel. A turn's
    # own ``variables`` win over them, and they over the version's defaults. None: none set.
    variables: Mapped[dict | None] = mapped_column(JSON)
    # Where the conversation came from: None, the owner's own chat (page or JSON API); ``api``,
    # the OpenAI-compatible endpoints (``api_key_id``: the key that called, None for a login
    # token); ``share``, a share link's public page. The per-version metrics can be read per
    # source.
    source: Mapped[str | None] = mapped_column(String(16))
    api_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    # ``share``: a visitor of a share link (``share_link_id``) chatting on its public page;
    # ``visitor`` is the random id in that visitor's signed cookie: the conversation is theirs
    # alone (app/share/services.py).
    share_link_id: Mapped[int | None] = mapped_column(
        ForeignKey("share_links.id", ondelete="SET NULL"), index=True
    )
    visitor: Mapped[str | None] = mapped_column(String(32))

    # Eager: the list and the header show the pinned version's number.
    pinned_version: Mapped[PromptVersion | None] = relationship(lazy="joined")


class Message(CreatedAtMixin, Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        # Per-version metrics read a version's replies in a time window. The trailing columns
        # are every column the metrics (and the history's reply counts) read, so those
        # queries never touch the table's rows, which are wide (the reply text): with 100,000
        # replies, 3-4x faster on both databases (docs/benchmarks.md, section 11).
        Index(
            "ix_messages_version_created",
            "prompt_version_id",
            "created_at",
            "role",
            "status",
            "conversation_id",
            "rating",
            "fallback",
            "tokens_in",
            "tokens_out",
            "ttft_ms",
            "total_ms",
            "format_valid",
        ),
        # The lease sweep reads only the few rows still streaming.
        Index(
            "ix_messages_streaming_lease",
            "lease_until",
            postgresql_where=text("status = 'streaming'"),
            sqlite_where=text("status = 'streaming'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    # The message before this one on its branch (None for a first message): an edited message
    # is a sibling of the one it replaces, a regenerated reply a sibling of the earlier reply.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    content: Mapped[str] = mapped_column(Text, default="", nullable=False)
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.COMPLETE, nullable=False)
    prompt_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("prompt_versions.id", ondelete="SET NULL")
    )
    provider: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(120))
    fallback: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    total_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # Why the reply ended without its full text, as a kind the page words for a person
    # (``app/chat/render.py failure_reason``): a provider error kind (``auth``, ``timeout``, …),
    # ``stopped`` or ``interrupted``. ``error`` keeps the technical detail.
    error_kind: Mapped[str | None] = mapped_column(String(32))
    # A reply of a version with a JSON output format (app/formats.py), checked when it ended
    # complete: True valid, False not (``format_error`` says why); None: not checked.
    format_valid: Mapped[bool | None] = mapped_column(Boolean)
    format_error: Mapped[str | None] = mapped_column(String(300))
    # Names and ids of the project files whose text went into this turn's instructions.
    context_files: Mapped[list | None] = mapped_column(JSON)
    # The template variable values this reply's instructions were rendered with (attribution);
    # None: its version is not a template.
    variables: Mapped[dict | None] = mapped_column(JSON)
    # While ``streaming``: the time after which the reply counts as abandoned.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Feedback on an assistant reply by the conversation's owner: +1 / -1, optional comment.
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    feedback: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # Eager: every message shown needs its version number, and it is one small join.
    prompt_version: Mapped[PromptVersion | None] = relationship(lazy="joined")


class Choice(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    TIE = "tie"


class Comparison(CreatedAtMixin, Base):
    """One message answered side by side by two configurations (a version, optionally with
    another model). Each answer is a normal reply in its own pinned conversation; this row ties
    them together and keeps the user's preference. The version ids and models are copied here
    so the record survives deleting either conversation."""

    __tablename__ = "comparisons"
    __table_args__ = (Index("ix_comparisons_project_created", "project_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    message: Mapped[str] = mapped_column(Text, nullable=False)
    left_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("prompt_versions.id", ondelete="SET NULL")
    )
    right_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("prompt_versions.id", ondelete="SET NULL")
    )
    left_model: Mapped[str] = mapped_column(String(120), nullable=False)
    right_model: Mapped[str] = mapped_column(String(120), nullable=False)
    left_conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    right_conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    left_reply_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    right_reply_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    choice: Mapped[str | None] = mapped_column(String(8))  # Choice; None: not judged yet
    chosen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    left_version: Mapped[PromptVersion | None] = relationship(foreign_keys=[left_version_id])
    right_version: Mapped[PromptVersion | None] = relationship(foreign_keys=[right_version_id])
