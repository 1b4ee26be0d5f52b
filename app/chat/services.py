"""Chat rules shared by the page and the JSON API.

A turn has two phases, and no database connection is held between them:

1. ``start_turn`` checks the user's spending budget (``app/usage.py``; read with the project,
   no round trip of its own), validates the message, finds or creates the conversation, builds
   the provider request from our own rows (the database is the source of truth for history, so
   a fallback provider sees exactly what the primary saw) and refuses one over
   ``CHAT_INPUT_MAX_CHARS``, then commits the user's message together with the assistant row
   (``streaming``, under a lease). ``prepare_turn`` does all of it but the commit, for a caller
   that starts several turns at once or none (Compare).
2. ``run_turn`` (streaming) or ``complete_turn`` (one response) calls the provider chain and
   gives the assistant row its final state exactly once however the call ends: ``complete``;
   ``incomplete`` when text had arrived before a failure or a Stop; ``error`` when nothing
   arrived (``replies``: checkpoints, the guarded final store, the spool), and charges the
   reply to the user's spending in the same transaction (``_charge``).

``run_turn`` yields typed events and knows nothing of HTTP or of readers: ``relay`` turns the
provider stream into text and heartbeats, ``turns`` runs it as a job and publishes its events,
``streaming`` renders them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import delete, select

from app import catalog, usage
from app.catalog import ModelChoice
from app.chat import branches, relay, replies, rows
from app.chat.feedback import get_message_for
from app.errors import NotFound, ProviderFailed, ValidationFailed
from app.extensions import db
from app.files.services import NO_FILES, chat_context, chat_files_exist
from app.llm import get_chain
from app.models import (
    Arm,
    Conversation,
    Message,
    MessageStatus,
    Project,
    PromptVersion,
    Role,
    User,
)
from app.models.base import utcnow
from app.projects.services import get_project_for, get_project_with
from app.prompts.versions import (
    DEFAULT_SYSTEM_PROMPT,
    active_version,
    canary_bucket,
    find_version,
    settings_of,
    version_by_id,
)
from app.providers.base import Cancel, ChatRequest, ChatTurn, ProviderError
from app.providers.chain import ChainEnd, Committed

log = logging.getLogger(__name__)

TITLE_MAX = 60
PAGE_MAX = 200


# --- events run_turn yields ------------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Waiting:
    """Nothing arrived for a while; keep the connection alive."""


@dataclass(frozen=True)
class Done:
    message: Message
    stored: bool = True  # False: the database was down; the reply waits in the spool


@dataclass(frozen=True)
class Failed:
    message: Message
    code: str
    error: str
    partial: bool
    stored: bool = True


ChatEvent = Delta | Waiting | Done | Failed


@dataclass
class Turn:
    """Everything the provider phase needs, loaded before it starts (no lazy loads while
    streaming). Only ``start_turn`` builds one."""

    conversation_id: int
    reply_id: int  # the assistant row, inserted as ``streaming`` with the user's message
    request: ChatRequest
    # The rows start_turn wrote or read, so the stream renders them without reloading them:
    # rows it read are committed without expiring (``_kept_loaded``); rows it inserted are
    # transient instances (``rows.insert_row``), never in the session.
    conversation: Conversation
    user_message: Message
    reply: Message  # transient: its final values are set in memory for rendering
    # Who pays, and for what (``_charge``): the allowlist entry the request was built for, and
    # the characters sent (to estimate the input of a reply that reports no usage).
    user_id: int
    project_id: int
    model: ModelChoice
    input_chars: int


@contextmanager
def _kept_loaded():
    """Commit without expiring what the session holds. Rows just written here are what the
    stream renders next (``Started``, ``Done``); expired, each would be reloaded by a SELECT
    on a freshly checked-out connection, several statements per reply for values we already
    have (all defaults are computed in Python, so nothing changes on the server side)."""
    session = db.session()
    previous = session.expire_on_commit
    session.expire_on_commit = False
    try:
        yield
    finally:
        session.expire_on_commit = previous


# --- conversations ---------------------------------------------------------------------------


def get_conversation_for(user: User, conversation_id: int) -> Conversation:
    conversation = db.session.scalar(
        select(Conversation)
        .join(Project, Project.id == Conversation.project_id)
        .where(Conversation.id == conversation_id, Project.owner_id == user.id)
    )
    if conversation is None:
        raise NotFound("No such conversation.")
    return conversation


def list_conversations(*, user: User, project_id: int) -> list[Conversation]:
    project = get_project_for(user, project_id)
    return list(
        db.session.scalars(
            select(Conversation)
            .where(Conversation.project_id == project.id)
            .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        )
    )


def rename_conversation(*, user: User, conversation_id: int, title: str | None) -> Conversation:
    conversation = get_conversation_for(user, conversation_id)
    title = (title or "").strip()
    if not title:
        raise ValidationFailed(fields={"title": "Give the conversation a title."})
    if len(title) > 200:
        raise ValidationFailed(fields={"title": "Use at most 200 characters."})
    conversation.title = title
    db.session.commit()
    return conversation


def delete_conversation(*, user: User, conversation_id: int) -> None:
    conversation = get_conversation_for(user, conversation_id)
    db.session.execute(delete(Message).where(Message.conversation_id == conversation.id))
    db.session.delete(conversation)
    db.session.commit()


def list_messages(
    *, user: User, conversation_id: int, before: int | None = None, limit: int = 50
) -> tuple[Conversation, list[Message], bool]:
    """One page of the branch being viewed (``branches``), oldest first, ending just before
    ``before`` (the newest page if None). Each message gets ``siblings``: its versions' ids
    (itself included, oldest first) when it has more than one, else None.

    The tree is read as ids only; the page's rows by primary key."""
    conversation = get_conversation_for(user, conversation_id)
    limit = max(1, min(limit, PAGE_MAX))
    tree = branches.load(conversation.id)
    path = tree.path_to(branches.leaf(conversation, tree))
    if before is not None:
        path = [message_id for message_id in path if message_id < before]
    page, has_more = path[-limit:], len(path) > limit
    stmt = select(Message).where(Message.id.in_(page)).order_by(Message.id)
    rows = list(db.session.scalars(stmt)) if page else []
    if replies.expire_stale(rows):  # a reply whose process died shows as interrupted at once
        rows = list(db.session.scalars(stmt.execution_options(populate_existing=True)))
    for row in rows:
        versions = tree.siblings(row.id)
        row.siblings = versions if len(versions) > 1 else None
    return conversation, rows, has_more


# --- a turn ----------------------------------------------------------------------------------


def clean_message(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationFailed(fields={"message": "Type a message first."})
    limit = current_app.config["CHAT_MESSAGE_MAX_CHARS"]
    if len(text) > limit:
        raise ValidationFailed(
            f"Messages are limited to {limit:,} characters.",
            fields={"message": f"Use at most {limit:,} characters (this has {len(text):,})."},
        )
    return text


def title_from(text: str) -> str:
    """A new conversation's automatic title: its first message on one line, cut to TITLE_MAX."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_MAX else line[: TITLE_MAX - 1].rstrip() + "…"


def _history(tree: branches.Tree, parent_id: int | None) -> list[ChatTurn]:
    """The branch up to ``parent_id`` (the message a new one follows), its newest
    ``CHAT_HISTORY_MAX_MESSAGES`` messages, oldest first: one coherent thread, whatever other
    branches hold. Rows without text (a failed reply) and a reply still being written are left
    out; so is a reply that repeats a role, which only rows stored before branches can show."""
    path = tree.path_to(parent_id)
    if not path:
        return []
    limit = current_app.config["CHAT_HISTORY_MAX_MESSAGES"]
    rows = db.session.execute(
        select(Message.role, Message.content)
        .where(
            Message.id.in_(path),
            Message.content != "",
            Message.status.not_in(replies.LIVE),  # a reply still being written elsewhere
        )
        .order_by(Message.id.desc())
        .limit(limit)
    ).all()
    turns: list[ChatTurn] = []
    for role, content in reversed(rows):
        if turns and role == Role.ASSISTANT and turns[-1].role == Role.ASSISTANT:
            turns[-1] = ChatTurn(role="assistant", content=content)
        else:
            turns.append(ChatTurn(role=role, content=content))
    return turns


def start_turn(**kwargs) -> Turn:
    """``prepare_turn``, then commit: the user's message is safe before any provider is
    called. Takes ``prepare_turn``'s arguments."""
    turn = prepare_turn(**kwargs)
    commit_turns(turn)
    return turn


def commit_turns(*turns: Turn) -> None:
    """Commit what ``prepare_turn`` wrote for ``turns``, keeping their rows loaded."""
    with _kept_loaded():
        db.session.commit()
    for turn in turns:
        serving = turn.reply.prompt_version
        if serving is not None and serving in db.session:
            db.session.expunge(serving)  # never changes: keep it loaded past later commits


def prepare_turn(
    *,
    user: User,
    project_id: int,
    message: str | None,
    conversation_id: int | None = None,
    regenerate: bool = False,
    version: int | None = None,
    model: str | None = None,
    latest: bool = False,
    reply_to: int | None = None,
    edit_of: int | None = None,
    title: str | None = None,
) -> Turn:
    """Store the user's message (or pick the one to answer again) and prepare the call.

    The message goes at the end of the branch being viewed (``branches``). ``edit_of`` (a
    user's message in this conversation) puts it beside that message instead, as its new
    version. To regenerate, ``reply_to`` names the reply to answer again (default: the last
    message of the branch); the new reply is its sibling. Either way the new reply becomes the
    end of the branch being viewed, and the model is sent that branch.

    A new conversation is pinned to ``version`` (a number in this project) when one is given,
    with ``model`` overriding the version's model (Compare); otherwise, while a canary runs, it
    is sent to the candidate or kept on production by its ``canary_bucket``, and the choice is
    recorded (``conversations.arm``); ``title`` replaces the title a new conversation takes
    from its first message. With ``latest`` and no ``conversation_id`` (and no
    ``version``), the message continues the project's chat: its most recently active
    conversation that is not pinned, or a new one if it has none.

    Refused before anything is written: a user over a spending budget (``BudgetExceeded``,
    read with the project). Refused after the request is built, with the rows written so far
    rolled back: a request over ``CHAT_INPUT_MAX_CHARS``. Nothing is committed here."""
    project, has_files, *spent = get_project_with(
        user,
        project_id,
        chat_files_exist(),
        *usage.spend_columns(),
        params=usage.spend_params(user.id),
    )
    usage.enforce(spent)
    if (version is not None or model is not None) and (regenerate or conversation_id):
        raise ValidationFailed(
            "A version is chosen when a conversation starts.",
            fields={"version": "Only a new conversation can be pinned."},
        )
    if latest and conversation_id is None and version is None and model is None:
        conversation_id = _latest_conversation_id(project)
    if regenerate:
        if conversation_id is None:
            raise ValidationFailed(fields={"conversation_id": "Say which conversation."})
        conversation = _conversation_in(project, user, conversation_id)
        tree = branches.load(conversation.id)
        target = branches.leaf(conversation, tree) if reply_to is None else reply_to
        user_message = _to_answer_again(tree, target)
    else:
        text = clean_message(message)
        if conversation_id is None:
            pinned = _pinned_version(project, version)
            if model is not None and catalog.listed_name(model) != model:
                raise ValidationFailed(fields={"model": catalog.not_offered()})
            # Its ``leaf_id`` stays NULL (the newest message: the reply) until a branch is
            # chosen or a second turn starts: no UPDATE for it here.
            conversation = rows.insert_row(
                Conversation,
                project_id=project.id,
                title=title or title_from(text),
                prompt_version_id=pinned.id if pinned else None,
                model=model,
                arm=Arm.PINNED if pinned else None,
            )
            if pinned is None:
                _assign_canary(project, conversation)  # by its id, known now
            tree = branches.Tree()
        else:
            conversation = _conversation_in(project, user, conversation_id)
            tree = branches.load(conversation.id)
        if edit_of is not None:
            parent_id = _edited(tree, edit_of).parent_id
        else:
            parent_id = branches.leaf(conversation, tree)
        user_message = rows.insert_row(
            Message,
            conversation_id=conversation.id,
            role=Role.USER,
            content=text,
            parent_id=parent_id,
        )
    serving = _serving_version(project, conversation)
    if conversation_id is None:  # transient: its relationship is set, not loaded
        conversation.pinned_version = serving if conversation.prompt_version_id else None
    settings = settings_of(serving)
    choice = catalog.resolve(conversation.model or settings.model)
    system = serving.content if serving else DEFAULT_SYSTEM_PROMPT
    files = chat_context(project.id) if has_files else NO_FILES
    request = ChatRequest(
        system=f"{system}\n\n{files.text}" if files.text else system,
        history=_history(tree, user_message.parent_id),
        message=user_message.content,
        models=choice.provider_ids,
        temperature=settings.temperature,
        max_output_tokens=settings.max_output_tokens,
    )
    input_chars = _check_input(request)
    reply = rows.insert_row(
        Message,
        conversation_id=conversation.id,
        role=Role.ASSISTANT,
        content="",
        status=MessageStatus.STREAMING,
        prompt_version_id=serving.id if serving else None,
        context_files=files.files or None,
        lease_until=replies.lease_until(),
        parent_id=user_message.id,
    )
    reply.prompt_version = serving  # for rendering; the row is never added to the session
    if conversation_id is not None:  # the new reply ends the branch being viewed
        rows.update_row(conversation, updated_at=utcnow(), leaf_id=reply.id)
    return Turn(
        conversation_id=conversation.id,
        reply_id=reply.id,
        request=request,
        conversation=conversation,
        user_message=user_message,
        reply=reply,
        user_id=user.id,
        project_id=project.id,
        model=choice,
        input_chars=input_chars,
    )


def _check_input(request: ChatRequest) -> int:
    """The characters ``request`` sends the model; ``ValidationFailed`` (``input_too_long``),
    with what this turn wrote rolled back, when they are over ``CHAT_INPUT_MAX_CHARS``."""
    history = sum(len(turn.content) for turn in request.history)
    size = len(request.system) + history + len(request.message)
    limit = current_app.config["CHAT_INPUT_MAX_CHARS"]
    if limit and size > limit:
        db.session.rollback()
        message = (
            f"This turn would send the model {size:,} characters (system prompt and files "
            f"{len(request.system):,}, earlier messages {history:,}, message "
            f"{len(request.message):,}); the limit is {limit:,}. Start a new conversation, "
            "or edit an earlier message to continue from there."
        )
        raise ValidationFailed(message, code="input_too_long", fields={"message": message})
    return size


def _latest_conversation_id(project: Project) -> int | None:
    """The project's chat for a client that keeps one conversation per project: the most
    recently active conversation that is not pinned to a version (those are tries of a version
    or a comparison, not the project's chat)."""
    return db.session.scalar(
        select(Conversation.id)
        .where(Conversation.project_id == project.id, Conversation.arm.is_distinct_from(Arm.PINNED))
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .limit(1)
    )


def _pinned_version(project: Project, number: int | None) -> PromptVersion | None:
    if number is None:
        return None
    found = find_version(project.id, number)
    if found is None:
        raise ValidationFailed(
            f"This project has no version {number}.",
            fields={"version": "Choose one of this project's versions."},
        )
    return found


def _assign_canary(project: Project, conversation: Conversation) -> None:
    """While a canary runs, send a new conversation to the candidate or keep it on production,
    by its bucket; sticky, because the choice is stored on the conversation."""
    candidate_id, percent = project.candidate_prompt_id, project.canary_percent
    if candidate_id is None or not percent:
        return
    if canary_bucket(conversation.id, candidate_id) < percent:
        rows.update_row(conversation, prompt_version_id=candidate_id, arm=Arm.CANDIDATE)
    else:
        rows.update_row(conversation, arm=Arm.PRODUCTION)


def _serving_version(project: Project, conversation: Conversation) -> PromptVersion | None:
    """The version that answers in this conversation: its pinned one, else production."""
    if conversation.prompt_version_id is not None:
        pinned = version_by_id(conversation.prompt_version_id)
        if pinned is not None:
            return pinned
    return active_version(project)


def start_regenerate(*, user: User, conversation_id: int, reply_id: int | None = None) -> Turn:
    """Answer a user's message again (Regenerate, and Retry after a failure): the one that
    ``reply_id`` answered, or the last one of the branch being viewed.

    Stored rows are never rewritten: the earlier reply stays, with its provider, tokens and
    status, as a sibling of the new one (‹ 1/2 ›), and the model sees the branch up to the
    message being answered."""
    conversation = get_conversation_for(user, conversation_id)  # 404 before anything else
    return start_turn(
        user=user,
        project_id=conversation.project_id,
        message=None,
        conversation_id=conversation.id,
        regenerate=True,
        reply_to=reply_id,
    )


def start_edit(*, user: User, message_id: int, message: str | None) -> Turn:
    """Send a new version of a user's message: a sibling of it, answered with the branch up
    to it; the old version and everything after it stay, one ‹ › away."""
    original = get_message_for(user, message_id)  # 404 before anything else
    conversation = original.conversation_id
    project_id = db.session.scalar(
        select(Conversation.project_id).where(Conversation.id == conversation)
    )
    return start_turn(
        user=user,
        project_id=project_id,
        message=message,
        conversation_id=conversation,
        edit_of=message_id,
    )


def select_branch(*, user: User, message_id: int) -> Conversation:
    """Show the branch through ``message_id`` (one version of a message): its newest end
    becomes the conversation's ``leaf_id``."""
    message = get_message_for(user, message_id)
    conversation = get_conversation_for(user, message.conversation_id)
    tree = branches.load(conversation.id)
    conversation.leaf_id = tree.newest_leaf(message.id)
    db.session.commit()
    return conversation


def _to_answer_again(tree: branches.Tree, message_id: int | None) -> Message:
    """The user's message to answer again for ``message_id``: a reply's user's message, or the
    message itself when it is a user's."""
    if message_id is None:
        raise ValidationFailed(fields={"conversation_id": "Nothing to regenerate yet."})
    if message_id not in tree:
        raise ValidationFailed(fields={"message_id": "Not a message of this conversation."})
    message = db.session.get(Message, message_id)
    if message.role == Role.ASSISTANT:
        message = db.session.get(Message, message.parent_id) if message.parent_id else None
    if message is None or message.role != Role.USER:
        raise ValidationFailed(fields={"message_id": "This reply answers no message."})
    return message


def _edited(tree: branches.Tree, message_id: int) -> Message:
    message = db.session.get(Message, message_id) if message_id in tree else None
    if message is None or message.role != Role.USER:
        raise ValidationFailed(fields={"message_id": "Only your own messages can be edited."})
    return message


def _conversation_in(project: Project, user: User, conversation_id: int) -> Conversation:
    conversation = get_conversation_for(user, conversation_id)
    if conversation.project_id != project.id:
        raise NotFound("No such conversation in this project.")
    return conversation


def _error_text(exc: ProviderError) -> str:
    names = {"openai": "OpenAI", "openrouter": "OpenRouter", "offline": "Offline model"}
    return f"{names.get(exc.provider, exc.provider)}: {exc.message}"


def _error_code(exc: ProviderError) -> str:
    from app.providers.base import ProviderBadRequest, ProviderContentPolicy

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
    end: ChainEnd | None = None,
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
    }
    charge = _charge(turn, values)
    stored = replies.finish(turn.reply_id, turn.conversation_id, values, charge)
    reply = turn.reply
    for key, value in values.items():
        setattr(reply, key, value)  # transient: nothing more is written
    reply.lease_until = None
    return reply, stored


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


def run_turn(turn: Turn, cancel: Cancel | None = None) -> Iterator[ChatEvent]:
    """Generate one reply: ``Delta``… then exactly one ``Done`` or ``Failed``, with the reply
    stored (``replies.finish``). ``Waiting`` while the model is silent.

    ``cancel`` is the turn's Stop (``turns.stop``): it closes the provider request at once, and
    the reply ends ``incomplete`` with what arrived, as a ``Done``. A checkpoint that finds the
    row no longer streaming (a Stop sent through the database, or a deleted conversation)
    cancels too. Every ``CHAT_CHECKPOINT_SECONDS`` the text so far is stored and the lease
    renewed, so a process that dies leaves its last checkpoint behind (``replies``). If the
    consumer goes away, the partial reply is stored as incomplete."""
    config = current_app.config
    cancel = cancel or Cancel()
    checkpoint_every = config["CHAT_CHECKPOINT_SECONDS"]
    source: queue.SimpleQueue = queue.SimpleQueue()
    stream = get_chain().stream(turn.request, cancel)
    pump = threading.Thread(target=relay.pump, args=(stream, source, cancel), daemon=True)
    started = time.monotonic()
    parts: list[str] = []
    ttft_ms: int | None = None
    end: ChainEnd | None = None
    committed: Committed | None = None
    failure: ProviderError | None = None
    outcome: Message | None = None
    next_checkpoint = started + checkpoint_every
    pump.start()
    try:
        events = relay.relay(
            source,
            heartbeat=config["CHAT_HEARTBEAT_SECONDS"],
            coalesce=config["CHAT_STREAM_COALESCE_MS"] / 1000,
        )
        for event in events:
            if isinstance(event, relay.Text):
                if ttft_ms is None:
                    ttft_ms = int((time.monotonic() - started) * 1000)
                parts.append(event.text)
                yield Delta(event.text)
            elif isinstance(event, relay.Idle):
                yield Waiting()
            elif isinstance(event, Committed):
                committed = event
            elif isinstance(event, ChainEnd):
                end = event
            elif isinstance(event, relay.Failure):
                failure = event.error
            if time.monotonic() >= next_checkpoint and not cancel.cancelled:
                if not replies.checkpoint(turn.reply_id, "".join(parts)):
                    cancel.cancel()  # stopped through the database, or the row is gone
                next_checkpoint = time.monotonic() + checkpoint_every
        stopped = cancel.cancelled and end is None
        total_ms = int((time.monotonic() - started) * 1000)
        text = "".join(parts)
        if stopped:
            outcome, stored = _finish(
                turn,
                text=text,
                status=MessageStatus.INCOMPLETE,
                committed=committed,
                error=replies.STOPPED_TEXT,
                error_kind=replies.STOPPED,
                ttft_ms=ttft_ms,
                total_ms=total_ms,
            )
            yield Done(outcome, stored=stored)
        elif failure is not None:
            status = MessageStatus.INCOMPLETE if text else MessageStatus.ERROR
            outcome, stored = _finish(
                turn,
                text=text,
                status=status,
                committed=committed,
                error=_error_text(failure),
                error_kind=failure.kind,
                ttft_ms=ttft_ms,
                total_ms=total_ms,
            )
            code, error = _error_code(failure), _error_text(failure)
            yield Failed(outcome, code, error, partial=bool(text), stored=stored)
        else:
            outcome, stored = _finish(
                turn,
                text=text,
                status=MessageStatus.COMPLETE,
                end=end,
                ttft_ms=ttft_ms,
                total_ms=total_ms,
            )
            yield Done(outcome, stored=stored)
    finally:
        cancel.cancel()
        if outcome is None:
            # The consumer went away, or something unexpected: keep what arrived, marked
            # incomplete.
            replies.rollback()
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


def open_chat(
    *,
    user: User,
    project_id: int,
    conversation_id: int | None,
    pin: int | None = None,
    limit: int = 30,
) -> ChatView:
    """What the chat tab shows: the conversation list and the newest page of one conversation,
    or a new chat (pinned to version ``pin`` when given: an unknown number is a 404)."""
    project = get_project_for(user, project_id)
    conversations = list_conversations(user=user, project_id=project.id)
    if conversation_id is None:
        pinned = None
        if pin is not None:
            try:
                pinned = _pinned_version(project, pin)
            except ValidationFailed as exc:
                raise NotFound(exc.message) from exc
        return ChatView(project, conversations, None, [], False, pinned)
    conversation = _conversation_in(project, user, conversation_id)
    _, messages, has_more = list_messages(user=user, conversation_id=conversation.id, limit=limit)
    return ChatView(project, conversations, conversation, messages, has_more)
