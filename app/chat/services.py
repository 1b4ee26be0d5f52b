"""Running a turn, and what the chat tab shows.

A turn has two phases, and no database connection is held between them:

1. An entry point of ``start`` (``send``, ``regenerate``, ``edit``, ``pinned``, ``case``)
   checks the budget and the input, and commits the user's message together with the
   assistant row (``streaming``, under a lease).
2. ``run_turn`` (streaming) or ``complete_turn`` (one response) calls the provider chain and
   gives the assistant row its final state exactly once however the call ends: ``complete``;
   ``incomplete`` when text had arrived before a failure or a Stop; ``error`` when nothing
   arrived (``replies``: checkpoints, the guarded final store, the spool), and charges the
   reply to the user's spending in the same transaction (``_charge``).

``run_turn`` yields the events of ``providers/events.py`` and knows nothing of HTTP or of
readers: ``relay`` turns the provider stream into text and heartbeats, ``turns`` runs it as a
job and publishes its events, ``streaming`` encodes them. Conversations themselves (list,
rename, delete, a page of messages) are ``conversations``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from flask import current_app

from app import formats, metrics, usage
from app.chat import relay, replies, titles
from app.chat.conversations import conversation_in, list_conversations, list_messages
from app.chat.start import Turn, pinned_version
from app.errors import NotFound, ProviderFailed, ValidationFailed
from app.llm import get_chain
from app.models import (
    Conversation,
    Message,
    MessageStatus,
    Project,
    PromptVersion,
    User,
)
from app.projects.services import get_project_for
from app.prompts.labels import labelled_version
from app.prompts.versions import active_version, version_by_id
from app.providers.errors import ProviderError
from app.providers.events import Committed, Done, Event, Failed, Text
from app.providers.transport import Cancel
from app.transactions import rollback_quietly

log = logging.getLogger(__name__)

SHUTDOWN = "shutdown"  # ``Cancel.reason`` of a turn cut short by a shutdown (``drain``)


def _error_text(exc: ProviderError) -> str:
    names = {"openai": "OpenAI", "openrouter": "OpenRouter", "offline": "Offline model"}
    return f"{names.get(exc.provider, exc.provider)}: {exc.message}"


def _error_code(exc: ProviderError) -> str:
    from app.providers.errors import ProviderBadRequest, ProviderContentPolicy

    if isinstance(exc, ProviderContentPolicy):
        return "content_policy"
    if isinstance(exc, ProviderBadRequest):
        return "provider_rejected"
    return "provider_unavailable"


def _finish(
    turn: Turn,
    *,
    text: str,
    status: MessageStatus,
    end: Done | None = None,
    committed: Committed | None = None,
    error: str | None = None,
    error_kind: str | None = None,
    ttft_ms: int | None = None,
    total_ms: int | None = None,
) -> tuple[Message, bool]:
    """Give the assistant row its final state (``replies.finish``: retried, then spooled).
    Who answered comes from ``end``; a reply cut short has only ``committed`` (provider and
    model asked for, no usage). Returns the row as rendered, and whether it is stored."""
    meta = end.meta if end else None
    if meta:
        provider, model, fallback = meta.provider, meta.model, end.fallback
    elif committed:
        provider, model, fallback = committed.provider, committed.model, committed.fallback
    else:
        provider = model = None
        fallback = False
    values = {
        "content": text,
        "status": status,
        "provider": provider,
        "model": model,
        "fallback": fallback,
        "tokens_in": meta.tokens_in if meta else None,
        "tokens_out": meta.tokens_out if meta else None,
        "ttft_ms": ttft_ms,
        "total_ms": total_ms,
        "error": error,
        "error_kind": error_kind,
        **_format_check(turn, text, status),
    }
    charge = _charge(turn, values)
    stored = replies.finish(turn.reply_id, turn.conversation_id, values, charge)
    if stored and status == MessageStatus.COMPLETE and turn.title_pending:
        titles.queue(turn.conversation_id)  # the model may title it now (``titles``)
    metrics.turn_finished(
        status=status,
        stopped=error_kind == replies.STOPPED,
        provider=provider,
        ttft_ms=ttft_ms,
        total_ms=total_ms,
    )
    reply = turn.reply
    for key, value in values.items():
        setattr(reply, key, value)  # transient: nothing more is written
    reply.lease_until = None
    return reply, stored


def _format_check(turn: Turn, text: str, status: MessageStatus) -> dict:
    """A complete reply of a version with a JSON output format, checked against it
    (``formats.check_reply``): ``format_valid`` and, when invalid, ``format_error``. Other
    replies are not checked (None): a stopped or failed reply is not the answer it asked for."""
    wanted = turn.request.output_format
    if wanted is None or status != MessageStatus.COMPLETE:
        return {"format_valid": None, "format_error": None}
    problem = formats.check_reply(text, wanted)
    return {"format_valid": problem is None, "format_error": problem}


def _charge(turn: Turn, values: dict) -> usage.Charge | None:
    """What the reply costs its user (``app/usage.py``): the tokens the provider reported, or
    for a reply that reports none (stopped, cut short) an estimate from the characters sent and
    received, because the provider bills those too. Nothing for a reply refused before any text
    arrived (``error``), or for the offline demo model."""
    if values["status"] == MessageStatus.ERROR or get_chain().is_offline:
        return None
    return usage.charge_for(
        user_id=turn.user_id,
        project_id=turn.project_id,
        model=turn.model,
        tokens_in=values["tokens_in"],
        tokens_out=values["tokens_out"],
        sent_chars=turn.input_chars,
        received_chars=len(values["content"]),
    )


def complete_turn(turn: Turn) -> Message:
    """One provider call, one stored reply. Raises ``ProviderFailed`` (502) on failure,
    after storing the error on the assistant row; the user's message stays stored."""
    started = time.monotonic()
    try:
        reply, end = get_chain().complete(turn.request)
    except ProviderError as exc:
        _finish(
            turn, text="", status=MessageStatus.ERROR, error=_error_text(exc), error_kind=exc.kind
        )
        raise ProviderFailed(_error_text(exc), code=_error_code(exc)) from exc
    elapsed = int((time.monotonic() - started) * 1000)
    reply, _ = _finish(
        turn,
        text=reply.text,
        status=MessageStatus.COMPLETE,
        end=end,
        ttft_ms=elapsed,
        total_ms=elapsed,
    )
    return reply


@dataclass(frozen=True)
class Upstream:
    """A turn's provider call, under way in its pump thread (``relay.pump``), and what
    ``run_turn`` relays of it."""

    source: relay.Handoff
    cancel: Cancel
    started: float  # time.monotonic() when the call was made


def call_provider(turn: Turn, cancel: Cancel) -> Upstream:
    """Make the turn's provider call now, in a pump thread (a greenlet under gevent, which
    runs until the request is sent before this returns). ``launch`` calls it before the
    response's head and the ``start`` event are written, so the provider hears of the turn
    that much sooner; ``run_turn`` relays it. Whoever calls it hands the ``Upstream`` to
    ``run_turn``, or cancels it."""
    source = relay.Handoff()
    stream = get_chain().stream(turn.request, cancel)
    pump = threading.Thread(
        target=turn.context.copy().run,  # in the context the turn was started in
        args=(relay.pump, stream, source, cancel),
        daemon=True,
    )
    started = time.monotonic()
    pump.start()
    return Upstream(source, cancel, started)


def run_turn(
    turn: Turn, cancel: Cancel | None = None, upstream: Upstream | None = None
) -> Iterator[Event]:
    """Generate one reply: the relay's ``Text``… (and ``Heartbeat`` while the model is silent)
    passed on as they come, then exactly one ``Done`` or ``Failed`` naming the stored reply
    (``message``, ``stored``: ``replies.finish``). ``Committed`` is kept, not passed on.

    ``cancel`` is the turn's Stop (``turns.stop``): it closes the provider request at once, and
    the reply ends ``incomplete`` with what arrived, as a ``Done``; cancelled with the reason
    ``SHUTDOWN`` (``drain``), it ends ``interrupted`` with what arrived, as a ``Failed``. A
    checkpoint that finds the row no longer streaming (a Stop sent through the database, or a
    deleted conversation) cancels too. Every ``CHAT_CHECKPOINT_SECONDS`` the text so far is
    stored and the lease renewed, so a process that dies leaves its last checkpoint behind
    (``replies``). If the consumer goes away, the partial reply is stored as incomplete.

    ``upstream``: the call already made (``call_provider``, with ``cancel``); else it is made
    when the generator starts."""
    config = current_app.config
    checkpoint_every = config["CHAT_CHECKPOINT_SECONDS"]
    if upstream is None:
        upstream = call_provider(turn, cancel or Cancel())
    cancel, source, started = upstream.cancel, upstream.source, upstream.started
    parts: list[str] = []
    ttft_ms: int | None = None
    end: Done | None = None
    committed: Committed | None = None
    failure: ProviderError | None = None
    outcome: Message | None = None
    next_checkpoint = started + checkpoint_every
    try:
        events = relay.relay(
            source,
            heartbeat=config["CHAT_HEARTBEAT_SECONDS"],
            coalesce=config["CHAT_STREAM_COALESCE_MS"] / 1000,
        )
        for event in events:
            if isinstance(event, Text):
                if ttft_ms is None:
                    ttft_ms = int((time.monotonic() - started) * 1000)
                parts.append(event.text)
                yield event
            elif isinstance(event, Committed):
                committed = event
            elif isinstance(event, Done):
                end = event
            elif isinstance(event, Failed):
                failure = event.error
            else:
                yield event  # Heartbeat, and kinds of event the turn stores nothing for
            if time.monotonic() >= next_checkpoint and not cancel.cancelled:
                if not replies.checkpoint(turn.reply_id, "".join(parts)):
                    cancel.cancel()  # stopped through the database, or the row is gone
                next_checkpoint = time.monotonic() + checkpoint_every
        stopped = cancel.cancelled and end is None
        text = "".join(parts)
        total_ms = int((time.monotonic() - started) * 1000)

        def store(status, error=None, error_kind=None):
            return _finish(
                turn,
                text=text,
                status=status,
                end=end,
                committed=committed,
                error=error,
                error_kind=error_kind,
                ttft_ms=ttft_ms,
                total_ms=total_ms,
            )

        if stopped and cancel.reason == SHUTDOWN:
            # The server is shutting down (``drain``): what arrived, as a reply the page offers
            # to Retry, stored now rather than after the lease.
            outcome, stored = store(
                MessageStatus.INTERRUPTED, replies.INTERRUPTED_TEXT, replies.INTERRUPTED
            )
            yield Failed(
                code="interrupted",
                reason=replies.INTERRUPTED_TEXT,
                partial=bool(text),
                message=outcome,
                stored=stored,
            )
        elif stopped:
            outcome, stored = store(MessageStatus.INCOMPLETE, replies.STOPPED_TEXT, replies.STOPPED)
            yield Done(message=outcome, stored=stored)
        elif failure is not None:
            status = MessageStatus.INCOMPLETE if text else MessageStatus.ERROR
            outcome, stored = store(status, _error_text(failure), failure.kind)
            yield Failed(
                failure,
                code=_error_code(failure),
                reason=_error_text(failure),
                partial=bool(text),
                message=outcome,
                stored=stored,
            )
        else:
            outcome, stored = store(MessageStatus.COMPLETE)
            yield replace(end or Done(), message=outcome, stored=stored)
    finally:
        cancel.cancel()
        if outcome is None:
            # The consumer went away, or something unexpected: keep what arrived, marked
            # incomplete.
            rollback_quietly()
            _finish(
                turn,
                text="".join(parts),
                status=MessageStatus.INCOMPLETE,
                committed=committed,
                error=replies.STOPPED_TEXT,
                error_kind=replies.STOPPED,
                ttft_ms=ttft_ms,
                total_ms=int((time.monotonic() - started) * 1000),
            )


@dataclass(frozen=True)
class ChatView:
    project: Project
    conversations: list[Conversation]
    conversation: Conversation | None
    messages: list[Message]
    has_more: bool
    pin: PromptVersion | None = None  # a new chat to be pinned to this version ("New chat with v5")
    # The version whose template variables the side panel offers: the conversation's pinned
    # one, else production (a canary may still send a new conversation to the candidate).
    serving: PromptVersion | None = None

    @property
    def variables(self) -> list[dict]:
        """The serving version's declared variables, when its text is a template."""
        serving = self.serving
        return list(serving.variables or []) if serving is not None and serving.templated else []


def open_chat(
    *,
    user: User,
    project_id: int,
    conversation_id: int | None,
    pin: int | None = None,
    label: str | None = None,
    limit: int = 30,
) -> ChatView:
    """What the chat tab shows: the conversation list and the newest page of one conversation,
    or a new chat (pinned to version ``pin``, or to the version ``label`` points at, when
    given: an unknown number or label is a 404)."""
    project = get_project_for(user, project_id)
    if conversation_id is None and pin is None and label is not None:
        pin = labelled_version(project, label).version
    conversations = list_conversations(user=user, project_id=project.id)
    if conversation_id is None:
        pinned = None
        if pin is not None:
            try:
                pinned = pinned_version(project, pin)
            except ValidationFailed as exc:
                raise NotFound(exc.message) from exc
        serving = pinned or active_version(project)
        return ChatView(project, conversations, None, [], False, pinned, serving)
    conversation = conversation_in(project, user, conversation_id)
    _, messages, has_more = list_messages(user=user, conversation_id=conversation.id, limit=limit)
    serving = version_by_id(conversation.prompt_version_id) or active_version(project)
    return ChatView(project, conversations, conversation, messages, has_more, serving=serving)
