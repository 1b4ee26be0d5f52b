"""Ways to start a turn: each a short function over one shared helper (``_begin``).

- ``send``: a message at the end of the branch being viewed, in a conversation or a new one
  (the project's chat with ``latest``); while a canary runs, a new conversation is sent to the
  candidate or kept on production by its ``canary_bucket``, and the choice is recorded
  (``conversations.arm``).
- ``regenerate``: answer a user's message again (Regenerate, Retry after a failure); the new
  reply is a sibling of the earlier one.
- ``edit``: a new version of a user's message, beside it, answered with the branch up to it.
- ``pinned``: a new conversation pinned to a version of the project (optionally under another
  model), as the chat's "New chat with v5" and each side of a Compare start one.
- ``case``: a run with no browser conversation behind it (prepared for evaluation runs): the
  case's earlier messages and its message in a new conversation pinned to a version, answered
  once.
- ``follow_up``: a call from an app that continues one of its stored replies (the Responses
  API's ``previous_response_id``).
- ``from_app``: a call from an app (``compat``, the OpenAI-compatible endpoints): the caller's
  earlier messages and its message in a new conversation of source ``api``, served like a new
  chat (or pinned by ``model@label`` / ``model@v7``), with the caller's system text under the
  project's policy.
- ``visitor``: a visitor of a share link (``share``, the project's public page): a new
  conversation of source ``share`` for that visitor, or one of theirs continued, served as a
  turn of the link's owner.

Every one checks the user's spending budget first (``app/usage.py``; read with the project, no
round trip of its own), builds the provider request from our own rows (the database is the
source of truth for history, so a fallback provider sees exactly what the primary saw), refuses
one over ``CHAT_INPUT_MAX_CHARS``, and inserts the user's message together with the assistant
row (``streaming``, under a lease) in one transaction (``app/transactions.py``): the user's
message is safe before any provider is called. A caller that starts several turns at once wraps
them in its own ``transaction()`` and they commit together (Compare). The turn is then run by
``services.run_turn`` (streamed: ``turns.launch``) or ``services.complete_turn``.

To add a way to start a turn: a function here that finds the conversation and the message's
place in it, then calls ``_begin``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import select

from app import catalog, formats, metrics, usage
from app.catalog import ModelChoice
from app.chat import branches, replies, rows
from app.chat.conversations import conversation_in, get_conversation_for, visitors_conversation
from app.chat.feedback import get_message_for
from app.errors import NotFound, ValidationFailed
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
    TitleState,
    User,
)
from app.models.base import utcnow
from app.projects.services import get_project_with
from app.prompts.labels import labelled_version
from app.prompts.versions import (
    active_version,
    canary_bucket,
    existing_version,
    render_instructions,
    settings_of,
    version_by_id,
)
from app.providers.types import ChatRequest, ChatTurn
from app.transactions import on_commit, transaction

TITLE_MAX = 60


@dataclass
class Turn:
    """Everything the provider phase needs, loaded before it starts (no lazy loads while
    streaming). Only ``_begin`` builds one."""

    conversation_id: int
    reply_id: int  # the assistant row, inserted as ``streaming`` with the user's message
    request: ChatRequest
    # The rows the turn's start wrote or read, so the stream renders them without reloading
    # them: rows it read are committed without expiring (``transaction(keep_loaded=True)``);
    # rows it inserted are transient instances (``rows.insert_row``), never in the session.
    conversation: Conversation
    user_message: Message
    reply: Message  # transient: its final values are set in memory for rendering
    # Who pays, and for what (``_charge``): the allowlist entry the request was built for, and
    # the characters sent (to estimate the input of a reply that reports no usage).
    user_id: int
    project_id: int
    model: ModelChoice
    input_chars: int
    # The conversation waits for its model-written title (``titles``): a complete reply queues
    # the job. Read here, as the turn starts: the row may be expired or detached by the end.
    title_pending: bool = False
    # The context the turn was started in (the request's, with its trace span): the provider
    # call runs in it, so a trace shows it under the request that started the turn, though
    # the generation outlives the view (``tracing.py``). A copy costs next to nothing.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


@dataclass(frozen=True)
class _Opened:
    """What every start reads first: the project, whether it has chat files, and the budget
    check, in one statement."""

    user: User
    project: Project
    has_files: bool


def _open(user: User, project_id: int) -> _Opened:
    """The project (``NotFound``), refused with ``BudgetExceeded`` for a user over a budget."""
    project, has_files, *spent = get_project_with(
        user,
        project_id,
        chat_files_exist(),
        *usage.spend_columns(),
        params=usage.spend_params(user.id),
    )
    usage.enforce(spent)
    return _Opened(user, project, has_files)


# --- the entry points ------------------------------------------------------------------------


def send(
    *,
    user: User,
    project_id: int,
    message: str | None,
    conversation_id: int | None = None,
    latest: bool = False,
    variables: dict | None = None,
) -> Turn:
    """``message`` at the end of the branch being viewed (``branches``) of ``conversation_id``,
    or of a new conversation. With ``latest`` and no ``conversation_id`` it continues the
    project's chat: its most recently active conversation that is not pinned, or a new one.
    ``variables``: template values for this turn (a new conversation keeps them)."""
    with transaction(keep_loaded=True):
        opened = _open(user, project_id)
        text = clean_message(message)
        if latest and conversation_id is None:
            conversation_id = _latest_conversation_id(opened.project)
        if conversation_id is None:
            conversation = _new_conversation(
                opened.project, title=title_from(text), auto=True, variables=variables
            )
            return _begin(
                opened, conversation, branches.Tree(), text=text, new=True, variables=variables
            )
        conversation = conversation_in(opened.project, user, conversation_id)
        tree = branches.load(conversation.id)
        return _begin(
            opened,
            conversation,
            tree,
            text=text,
            parent_id=branches.leaf(conversation, tree),
            variables=variables,
        )


def regenerate(
    *,
    user: User,
    conversation_id: int | None,
    reply_id: int | None = None,
    project_id: int | None = None,
    latest: bool = False,
    variables: dict | None = None,
) -> Turn:
    """Answer a user's message again: the one that ``reply_id`` answered, or the last one of
    the branch being viewed. ``project_id`` when the caller names the project (the chat
    endpoint's ``regenerate``; with ``latest`` and no ``conversation_id``, in the project's
    chat as ``send`` finds it), else it is the conversation's (404 before anything else).

    Stored rows are never rewritten: the earlier reply stays, with its provider, tokens and
    status, as a sibling of the new one (‹ 1/2 ›), and the model sees the branch up to the
    message being answered. The new reply becomes the end of the branch being viewed."""
    if project_id is None:
        project_id = get_conversation_for(user, conversation_id).project_id
    with transaction(keep_loaded=True):
        opened = _open(user, project_id)
        if latest and conversation_id is None:
            conversation_id = _latest_conversation_id(opened.project)
        if conversation_id is None:
            raise ValidationFailed(fields={"conversation_id": "Say which conversation."})
        conversation = conversation_in(opened.project, user, conversation_id)
        tree = branches.load(conversation.id)
        target = branches.leaf(conversation, tree) if reply_id is None else reply_id
        return _begin(
            opened,
            conversation,
            tree,
            user_message=_to_answer_again(tree, target),
            variables=variables,
        )


def edit(*, user: User, message_id: int, message: str | None) -> Turn:
    """A new version of a user's message: a sibling of it, answered with the branch up to it;
    the old version and everything after it stay, one ‹ › away."""
    original = get_message_for(user, message_id)  # 404 before anything else
    conversation_id = original.conversation_id
    project_id = db.session.scalar(
        select(Conversation.project_id).where(Conversation.id == conversation_id)
    )
    with transaction(keep_loaded=True):
        opened = _open(user, project_id)
        text = clean_message(message)
        conversation = conversation_in(opened.project, user, conversation_id)
        tree = branches.load(conversation.id)
        parent_id = _edited(tree, message_id).parent_id
        return _begin(opened, conversation, tree, text=text, parent_id=parent_id)


def pinned(
    *,
    user: User,
    project_id: int,
    message: str | None,
    version: int | None = None,
    model: str | None = None,
    title: str | None = None,
    variables: dict | None = None,
    label: str | None = None,
) -> Turn:
    """``message`` in a new conversation pinned to ``version`` (a number in this project) or
    to the version ``label`` points at (``prompts.labels``: an unknown label is a 404), under
    ``model`` instead of the version's own when given (Compare); ``title`` replaces the title
    taken from the message."""
    with transaction(keep_loaded=True):
        opened = _open(user, project_id)
        if label is not None:
            version = labelled_version(opened.project, label).version
        text = clean_message(message)
        conversation = _new_conversation(
            opened.project,
            title=title or title_from(text),
            version=version,
            model=model,
            auto=title is None,
            variables=variables,
        )
        return _begin(
            opened, conversation, branches.Tree(), text=text, new=True, variables=variables
        )


def case(
    *,
    user: User,
    project_id: int,
    message: str | None,
    version: int,
    history: Sequence[tuple[str, str]] = (),
    model: str | None = None,
    title: str | None = None,
    variables: dict | None = None,
) -> Turn:
    """One case of an evaluation run: ``history`` (``(role, text)`` pairs, oldest first: what
    the conversation held before) and ``message``, in a new conversation pinned to
    ``version``, none of it typed in a browser. The rows are stored like any chat's, so the
    run's answers can be read, rated and compared like any other."""
    with transaction(keep_loaded=True):
        opened = _open(user, project_id)
        text = clean_message(message)
        conversation = _new_conversation(
            opened.project,
            title=title or title_from(text),
            version=version,
            model=model,
            variables=variables,
        )
        tree, parent_id = _insert_history(conversation, history)
        return _begin(
            opened,
            conversation,
            tree,
            text=text,
            parent_id=parent_id,
            new=True,
            variables=variables,
        )


def from_app(
    *,
    user: User,
    project_id: int,
    message: str | None,
    history: Sequence[tuple[str, str]] = (),
    version: int | None = None,
    label: str | None = None,
    instructions: Instructions | None = None,
    variables: dict | None = None,
    api_key_id: int | None = None,
) -> Turn:
    """A call from an app (the OpenAI-compatible endpoints): ``history`` and ``message`` in a
    new conversation of source ``api``, attributed to ``api_key_id``; served like a new chat
    (production, or the canary's arm) unless ``version`` or ``label`` pins it.
    ``instructions``: the caller's own system text and what the project's policy does with it."""
    with transaction(keep_loaded=True):
        opened = _open(user, project_id)
        if label is not None:
            version = labelled_version(opened.project, label).version
        text = clean_message(message)
        conversation = _new_conversation(
            opened.project,
            title=title_from(text),
            version=version,
            auto=True,
            variables=variables,
            source="api",
            api_key_id=api_key_id,
        )
        tree, parent_id = _insert_history(conversation, history)
        return _begin(
            opened,
            conversation,
            tree,
            text=text,
            parent_id=parent_id,
            new=True,
            variables=variables,
            instructions=instructions,
        )


def follow_up(
    *,
    user: User,
    reply_id: int,
    project_id: int,
    message: str | None,
    history: Sequence[tuple[str, str]] = (),
    instructions: Instructions | None = None,
    variables: dict | None = None,
) -> Turn:
    """A call from an app that continues a stored reply (the Responses API's
    ``previous_response_id``): ``history`` and ``message`` after reply ``reply_id`` of an
    ``api`` conversation of ``project_id``, on that branch (what the model sees is the branch up
    to that reply, whatever was added beside it since). Any other message is a 404."""
    with transaction(keep_loaded=True):
        opened = _open(user, project_id)
        previous = db.session.scalar(
            select(Message)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(
                Message.id == reply_id,
                Message.role == Role.ASSISTANT,
                Conversation.project_id == opened.project.id,
                Conversation.source == "api",
            )
        )
        if previous is None:
            raise NotFound("No such response in this project.", code="response_not_found")
        text = clean_message(message)
        conversation = conversation_in(opened.project, user, previous.conversation_id)
        tree = branches.load(conversation.id)
        tree, parent_id = _insert_history(conversation, history, tree, previous.id)
        return _begin(
            opened,
            conversation,
            tree,
            text=text,
            parent_id=parent_id,
            variables=variables,
            instructions=instructions,
        )


def visitor(
    *,
    user: User,
    project_id: int,
    message: str | None,
    share_link_id: int,
    visitor: str,
    conversation_id: int | None = None,
) -> Turn:
    """A visitor of a share link (``app/share``) chatting on its public page, served as a turn
    of the link's owner ``user`` (the owner's budgets, the project's metrics): a new
    conversation of source ``share`` for this link and visitor, served like a new chat, or the
    end of the branch of ``conversation_id``, which must be this visitor's on this link (any
    other id is a 404, whoever owns it)."""
    with transaction(keep_loaded=True):
        opened = _open(user, project_id)
        text = clean_message(message)
        if conversation_id is None:
            conversation = _new_conversation(
                opened.project,
                title=title_from(text),
                auto=True,
                source="share",
                share_link_id=share_link_id,
                visitor=visitor,
            )
            return _begin(opened, conversation, branches.Tree(), text=text, new=True)
        conversation = visitors_conversation(
            share_link_id=share_link_id, visitor=visitor, conversation_id=conversation_id
        )
        tree = branches.load(conversation.id)
        return _begin(
            opened, conversation, tree, text=text, parent_id=branches.leaf(conversation, tree)
        )


@dataclass(frozen=True)
class Instructions:
    """A caller's own system text (``text``), put after the version's instructions
    (``replace`` False) or instead of them."""

    text: str
    replace: bool = False


def _insert_history(
    conversation: Conversation,
    history: Sequence[tuple[str, str]],
    tree: branches.Tree | None = None,
    parent_id: int | None = None,
) -> tuple[branches.Tree, int | None]:
    """Store messages given by the caller (oldest first) as one branch after ``parent_id``
    (None: from the start of a new conversation): the tree and the last one's id."""
    tree = tree if tree is not None else branches.Tree()
    for role, content in history:
        if role not in (Role.USER, Role.ASSISTANT):
            raise ValidationFailed(fields={"history": "Each message is user or assistant."})
        row = rows.insert_row(
            Message,
            conversation_id=conversation.id,
            role=role,
            content=content,
            parent_id=parent_id,
        )
        tree.add(row.id, parent_id)
        parent_id = row.id
    return tree, parent_id


# --- the shared helper -----------------------------------------------------------------------


def _begin(
    opened: _Opened,
    conversation: Conversation,
    tree: branches.Tree,
    *,
    text: str | None = None,
    parent_id: int | None = None,
    user_message: Message | None = None,
    new: bool = False,
    variables: dict | None = None,
    instructions: Instructions | None = None,
) -> Turn:
    """Insert the user's message (``text`` after ``parent_id``; or answer ``user_message``
    again), build the provider request and insert the assistant row: the turn, ready to run.
    Committed by the caller's ``transaction``. ``new``: ``conversation`` was inserted by this
    turn (its ``leaf_id`` stays NULL, the newest message, instead of an UPDATE).
    ``variables``: the call's template values, over the conversation's and the version's
    defaults; the values used are stored on the reply (``render_instructions``)."""
    project = opened.project
    if user_message is None:
        user_message = rows.insert_row(
            Message,
            conversation_id=conversation.id,
            role=Role.USER,
            content=text,
            parent_id=parent_id,
        )
    serving = _serving_version(project, conversation)
    if new:  # transient: its relationship is set, not loaded
        conversation.pinned_version = serving if conversation.prompt_version_id else None
    settings = settings_of(serving)
    choice = catalog.resolve(conversation.model or settings.model)
    rendered = render_instructions(serving, call=variables, conversation=conversation.variables)
    system = rendered.text
    if instructions is not None:
        system = instructions.text if instructions.replace else f"{system}\n\n{instructions.text}"
    files = chat_context(project.id) if opened.has_files else NO_FILES
    request = ChatRequest(
        system=f"{system}\n\n{files.text}" if files.text else system,
        history=_history(tree, user_message.parent_id),
        message=user_message.content,
        models=choice.provider_ids,
        temperature=settings.temperature,
        max_output_tokens=settings.max_output_tokens,
        output_format=formats.request_format(settings.output_format, settings.output_schema),
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
        variables=rendered.variables,
        lease_until=replies.lease_until(),
        parent_id=user_message.id,
    )
    reply.prompt_version = serving  # for rendering; the row is never added to the session
    if not new:  # the new reply ends the branch being viewed
        rows.update_row(conversation, updated_at=utcnow(), leaf_id=reply.id)
    turn = Turn(
        conversation_id=conversation.id,
        reply_id=reply.id,
        request=request,
        conversation=conversation,
        user_message=user_message,
        reply=reply,
        user_id=opened.user.id,
        project_id=project.id,
        model=choice,
        input_chars=input_chars,
        title_pending=conversation.title_state == TitleState.PENDING,
    )
    on_commit(lambda: _started(turn))
    return turn


def _started(turn: Turn) -> None:
    """After the commit: count the turn, and keep its serving version loaded past later
    commits (it never changes)."""
    metrics.turns_started(1)
    serving = turn.reply.prompt_version
    if serving is not None and serving in db.session:
        db.session.expunge(serving)


def _new_conversation(
    project: Project,
    *,
    title: str,
    version: int | None = None,
    model: str | None = None,
    auto: bool = False,
    variables: dict | None = None,
    source: str | None = None,
    api_key_id: int | None = None,
    share_link_id: int | None = None,
    visitor: str | None = None,
) -> Conversation:
    """Insert a conversation: pinned to ``version`` (and ``model``) when given, else on the
    canary's arm for it. Its ``leaf_id`` stays NULL (the newest message: the reply) until a
    branch is chosen or a second turn starts: no UPDATE for it here. ``auto``: ``title`` is
    the automatic one (the cut first message), so the model may title it once a reply is
    complete (``titles``: the conversation is inserted ``title_state = pending``)."""
    pinned_to = pinned_version(project, version)
    if model is not None and catalog.listed_name(model) != model:
        raise ValidationFailed(fields={"model": catalog.not_offered()})
    conversation = rows.insert_row(
        Conversation,
        project_id=project.id,
        title=title,
        prompt_version_id=pinned_to.id if pinned_to else None,
        model=model,
        arm=Arm.PINNED if pinned_to else None,
        title_state=TitleState.PENDING if auto and titles_wanted() else None,
        variables=variables or None,  # checked by the turn's ``_begin`` (rolled back if bad)
        source=source,
        api_key_id=api_key_id,
        share_link_id=share_link_id,
        visitor=visitor,
    )
    if pinned_to is None:
        _assign_canary(project, conversation)  # by its id, known now
    return conversation


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


def titles_wanted() -> bool:
    """Whether the model writes titles: ``CHAT_TITLES`` and a real provider configured."""
    return bool(current_app.config["CHAT_TITLES"]) and not get_chain().is_offline


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


def _check_input(request: ChatRequest) -> int:
    """The characters ``request`` sends the model; ``ValidationFailed`` (``input_too_long``),
    with what this turn wrote rolled back, when they are over ``CHAT_INPUT_MAX_CHARS``."""
    history = sum(len(turn.content) for turn in request.history)
    size = len(request.system) + history + len(request.message)
    limit = current_app.config["CHAT_INPUT_MAX_CHARS"]
    if limit and size > limit:
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


def pinned_version(project: Project, number: int | None) -> PromptVersion | None:
    return None if number is None else existing_version(project, number)


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
