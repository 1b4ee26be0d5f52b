"""The chat API's shapes, declared once: a conversation, a message (and its feedback, its
context files), a page of messages, a reply, a turn's state; the data of each server-sent event
of a turn (``SSE_EVENTS``); and the bodies of the chat operations.

Messages are rendered by the process generating a turn (``Message.of``) for the API's answers
and the turn's events alike."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from app.apimodels import (
    Body,
    Checked,
    Id,
    Out,
    Query,
    QueryInt,
    Time,
    checked,
    omitted,
    required_str,
)
from app.chat.feedback import RATING_NAMES
from app.chat.render import ending, meta_line, render_reply
from app.models import Role

Status = Literal["streaming", "stopping", "complete", "incomplete", "error", "interrupted"]


class Conversation(Out):
    id: int
    project_id: int
    title: str
    pinned_version: int | None = Field(
        description="The version number every reply uses (pinned at the start, or by the "
        "canary); null: the project's production version."
    )
    model: str | None = Field(description="A model overriding the pinned version's (Compare).")
    arm: Literal["pinned", "candidate", "production"] | None = Field(
        description="Why it is served as it is: `pinned` by the user, sent to the `candidate` or "
        "kept on `production` by a canary; null: no canary was running."
    )
    variables: Values | None = Field(
        description="Template variable values set for this conversation (at its start, or "
        "with `PATCH`); null: none."
    )
    source: str | None = Field(
        description="Where it came from: null, the owner's own chat (page or JSON API); `api`, "
        "an app calling the OpenAI-compatible endpoints (`api_key_id`: with which key); "
        "`share`, a visitor of a share link."
    )
    api_key_id: int | None
    created_at: Time
    updated_at: Time

    @classmethod
    def read(cls, row: Any, **more: Any) -> Conversation:
        pinned = row.pinned_version
        return super().read(row, pinned_version=pinned.version if pinned else None, **more)


class ConversationList(Out):
    data: list[Conversation]


class Feedback(Out):
    rating: Literal["up", "down"] = Field(description="👍 `up` or 👎 `down`.")
    comment: str | None = Field(description="At most 2000 characters.")
    rated_at: Time = Field(description="When the feedback was last changed.")


class ContextFile(Out):
    """A project file whose text went into this turn's instructions."""

    id: int
    name: str
    chars: int = Field(description="Characters included in the turn.")
    total_chars: int
    truncated: bool
    included: bool


class Message(Out):
    id: int
    conversation_id: int
    parent_id: int | None = Field(
        description="The message before this one on its branch; null for a first message."
    )
    siblings: list[int] | None = Field(
        description="In a message list: the ids of this message's versions (itself included, "
        "oldest first) when it was edited or regenerated, for a ‹ 2/3 › switch; null when it "
        "has no other version, and in a turn's events."
    )
    role: Literal["user", "assistant"]
    content: str
    status: Status = Field(
        description="`streaming`: the reply is being written (its text so far, checkpointed "
        "every few seconds); `stopping`: Stop was asked for and the server is ending it; "
        "`incomplete`: text arrived, then the reply stopped (Stop, a dropped stream, a provider "
        "failure); `error`: nothing arrived; `interrupted`: the server process writing it "
        "stopped (its last checkpoint is kept)."
    )
    provider: str | None = Field(description="`openai`, `openrouter` or `offline`.")
    model: str | None
    fallback: bool = Field(description="Answered by a fallback provider.")
    prompt_version: int | None = Field(description="Number of the prompt version used.")
    tokens_in: int | None
    tokens_out: int | None
    ttft_ms: int | None
    total_ms: int | None
    error: str | None = Field(
        description="The technical reason a reply did not complete (the provider's own words, "
        'after its name), for logs and the page\'s folded "Details"; null when it completed.'
    )
    error_kind: str | None = Field(
        description="Why a reply did not complete: `stopped` (Stop), `interrupted` (the server "
        "writing it stopped), or the provider failure's kind (`auth`, `model_not_found`, "
        "`quota`, `rate_limited`, `content_policy`, `bad_request`, `unavailable`, `timeout`, "
        "`connection`, `malformed`); null when it completed and for replies stored before this "
        "field existed."
    )
    error_reason: str | None = Field(
        description="What the page says about a reply that did not complete, in words for a "
        'person (e.g. "The API key was refused — an admin must fix the key.", "Stopped."); '
        "null when it completed, is still being written, or for a user's message."
    )
    format_valid: bool | None = Field(
        description="A complete reply of a version with a JSON output format: whether it is "
        "valid JSON of that format (an object; matching the schema). null: not checked (a "
        "text version, a reply that did not complete, a user's message)."
    )
    format_error: str | None = Field(
        description="Why `format_valid` is false, e.g. `Not JSON: …` or `Does not match the "
        "schema at /answer: …`; null otherwise."
    )
    context_files: list[ContextFile]
    variables: Values | None = Field(
        description="The template variable values this reply's instructions were rendered "
        "with; null for a user's message and when the version is not a template."
    )
    created_at: Time
    feedback: Feedback | None = Field(
        description="The owner's 👍/👎 on an assistant reply; null when not rated (always null "
        "for a user's message)."
    )
    html: str = omitted("Sanitised HTML of an assistant reply (`html=1`).")
    meta: str = omitted(
        "The line the page shows under an assistant reply (`html=1`): model · "
        "provider (fallback), prompt version, tokens, seconds, files, status unless complete, "
        "joined by ` · `."
    )

    @classmethod
    def of(cls, row: Any, *, html: bool = False) -> dict[str, Any]:  # type: ignore[override]
        return cls.read(row, html=html).as_json()

    @classmethod
    def read(cls, row: Any, *, html: bool = False) -> Message:  # type: ignore[override]
        """A message; ``html``: an assistant reply's rendered HTML and meta line too."""
        if html and row.role == Role.ASSISTANT:
            # The line under the bubble, as the page renders it.
            more = {"html": render_reply(row), "meta": meta_line(row)}
        else:
            more = {}
        end = ending(row)
        version = row.prompt_version
        return super().read(
            row,
            # Set by the message list (the branch being viewed); None elsewhere (events).
            siblings=getattr(row, "siblings", None),
            prompt_version=version.version if version else None,
            error_reason=end.reason if end else None,
            context_files=row.context_files or [],
            feedback=_feedback(row),
            **more,
        )


def _feedback(row: Any) -> Feedback | None:
    """The owner's feedback on a reply (``rating`` and ``rated_at`` are written together)."""
    if row.rating is None:
        return None
    return Feedback(rating=RATING_NAMES[row.rating], comment=row.feedback, rated_at=row.rated_at)


class MessagePage(Out):
    data: list[Message]
    has_more: bool = Field(description="Older messages exist (pass `before`).")


class ChatReply(Out):
    conversation_id: int
    message: Message
    reply: str = Field(description="The reply's text (`message.content`).")


class TurnState(Out):
    id: int
    conversation_id: int
    status: Status = Field(
        description="`stopping` until the generating process has ended it; the final status if "
        "it had already ended."
    )


# --- the data of each server-sent event (``app/chat/streaming.py`` writes them) -------------------

_STORED = (
    "false: the database was unreachable when the reply ended; the server keeps it and writes "
    "it when the database is back (the message id stays the same)."
)


class ChatStreamStart(Out):
    turn_id: int = Field(description="Attach to it again, or stop it: `/api/turns/…`.")
    conversation: Conversation
    user_message: Message


class ChatStreamDelta(Out):
    text: str


class ChatStreamSnapshot(Out):
    text: str = Field(description="The reply so far: replaces what the reader has.")


class ChatStreamDone(Out):
    message: Message
    stored: bool = Field(description=_STORED)


class ChatStreamFailure(Out):
    code: Literal[
        "provider_unavailable",
        "provider_rejected",
        "content_policy",
        "interrupted",
        "internal_error",
    ] = Field(
        description="`interrupted`: the server process writing the reply stopped; the text it "
        "had is kept."
    )
    message: str


class ChatStreamError(Out):
    error: ChatStreamFailure
    partial: bool = Field(description="Some text arrived before the failure.")
    message: Message
    stored: bool = Field(description=_STORED)


# Each event's name and the model of its data.
SSE_EVENTS: dict[str, type[Out]] = {
    "start": ChatStreamStart,
    "delta": ChatStreamDelta,
    "snapshot": ChatStreamSnapshot,
    "done": ChatStreamDone,
    "error": ChatStreamError,
}

# --- query parameters -----------------------------------------------------------------------------


class MessagesQuery(Query):
    before: QueryInt = Field(None, description="A message id: the page ends before it.")
    limit: QueryInt = Field(50, description="Page size (default 50), clamped to 1–200.")
    html: str | None = Field(
        None,
        description="`1` adds each assistant reply's rendered `html` and its `meta` line.",
        json_schema_extra={"type": "string"},
    )


class EventsQuery(Query):
    # Checked by the view, with ``Last-Event-ID`` (``app/chat/api.py``).
    after: Checked = checked(
        {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"},
        description="The last event id received (as `Last-Event-ID`); present but empty is a 422.",
    )


# --- bodies ---------------------------------------------------------------------------------------

MESSAGE = "The user's message (at most `CHAT_MESSAGE_MAX_CHARS`)."
STREAM = "Answer with server-sent events."
_VERSION = (
    "Start a new conversation pinned to this prompt version number of the project: its replies "
    "use that version (text and model settings) whatever becomes active later. Only without a "
    "conversation id; an unknown number is a 422."
)
_VARIABLES = (
    "Template variable values for this turn (docs/templates.md): an object of names the serving "
    "prompt version declares and values of their types. They win over the conversation's values "
    "and the version's defaults; a new conversation keeps them as its own. An unknown name, a "
    "wrong type or a required variable without a value is a 422 `variables_invalid` naming it "
    "in `fields` (`variables.<name>`)."
)
Values = dict[str, Any]
_LABEL = (
    "Start a new conversation pinned to the version this label of the project points at "
    "(`staging`, …; `production` and `candidate` are the release's pointers), as `version` "
    "does; an unknown label is a 404. Not with `version`."
)
_ID_OR_DIGITS = {
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 2147483647},
        {"type": "string", "pattern": "^[0-9]{1,10}$"},
    ],
    "description": "An id, as a number or a string of digits.",
}


def _message_or_regenerate(conversation: str, conversation_schema: dict) -> dict:
    """Either a message, or ``regenerate: true`` with the conversation to regenerate in."""
    return {
        "anyOf": [
            {"required": ["message"], "properties": {"message": {"type": "string"}}},
            {
                "required": ["regenerate", conversation],
                "properties": {"regenerate": {"const": True}, conversation: conversation_schema},
            },
        ]
    }


class ProjectChat(Body):
    __schema_extra__ = _message_or_regenerate(
        "conversation_id", {"type": "integer", "minimum": 1, "maximum": 2147483647}
    )

    message: str | None = Field(None, description=MESSAGE)
    conversation_id: Id | None = None
    stream: bool | None = Field(None, description=STREAM)
    version: Id | None = Field(None, description=_VERSION)
    label: str | None = Field(None, description=_LABEL, max_length=40)
    regenerate: bool | None = Field(None, description="Answer the last user message again.")
    variables: Values | None = Field(None, description=_VARIABLES)


class DesignChat(Body):
    __required__ = ("projectId",)
    __schema_extra__ = _message_or_regenerate("conversationId", _ID_OR_DIGITS)

    projectId: Checked = checked(_ID_OR_DIGITS)  # noqa: N815 (the design's names)
    message: str | None = Field(None, description=MESSAGE)
    conversationId: Checked = checked(  # noqa: N815
        {"anyOf": [*_ID_OR_DIGITS["anyOf"], {"type": "null"}]},
        description=_ID_OR_DIGITS["description"],
    )
    stream: bool | None = Field(None, description=STREAM)
    version: Id | None = Field(None, description=_VERSION)
    label: str | None = Field(None, description=_LABEL, max_length=40)
    regenerate: bool | None = Field(None, description="Answer the last user message again.")
    newConversation: bool | None = Field(  # noqa: N815
        None, description="Start a new conversation instead of continuing the project's chat."
    )
    variables: Values | None = Field(None, description=_VARIABLES)


class Rename(Body):
    __schema_extra__ = {"minProperties": 1}

    title: str | None = Field(None, description="Not blank, at most 200 characters after trimming.")
    variables: Values | None = Field(
        None,
        description="Replace the conversation's template variable values (names its serving "
        "version declares, of their types; `{}` or null clears them).",
    )


class Regenerate(Body):
    message_id: Id | None = Field(
        None, description="A message of this conversation (default: the branch's last)."
    )
    stream: bool | None = Field(None, description=STREAM)


class Edit(Body):
    __required__ = ("message",)

    message: str | None = required_str(MESSAGE)
    stream: bool | None = Field(None, description=STREAM)


class Rate(Body):
    __required__ = ("rating",)

    # Both checked by the service (``app/chat/feedback.py``), with its own messages.
    rating: Checked = checked({"enum": ["up", "down", None]})
    comment: Checked = checked({"type": ["string", "null"]})
