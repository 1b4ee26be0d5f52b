"""Conversation titles written by the model: a ``title`` job on the queue (``app/jobs.py``).

A new conversation is titled at once from its first message, cut to ``TITLE_MAX`` characters
(``start.title_from``), and inserted ``title_state = pending`` when the model may write a
better one (``CHAT_TITLES`` on, a real provider configured; not for Compare's or an evaluation
run's conversations, which are named by their caller). When a reply of a pending conversation
is stored ``complete`` (``services._finish``), the turn queues the job; the page learns the
new title by reading the conversation again (``static/js/chat.js``). So a reload, Stop or a
failed first reply no longer leaves the cut message for good: the first reply that completes,
whenever it does, queues the job.

The job (``write_title``) makes one short, non-streamed call with the first exchange, on each
provider's default model (the cheap one an operator configures), after the reply was stored,
so it never delays a reply. The same lease-and-guard pattern as the other jobs:

1. a conversation renamed by the user (its title is no longer the automatic one), titles
   turned off, or a user over a budget: ``done`` with no call (the title is a nicety; the chat
   shows the budget already);
2. **claim**: ``UPDATE … SET title_claimed_at = now, title_attempts = title_attempts + 1
   WHERE id = ? AND title_state = 'pending' AND title_attempts < TITLE_ATTEMPTS AND (no claim
   OR the claim's lease is over)``; one row or none, so two runs never call at once;
3. the call, holding no database connection;
4. one guarded ``UPDATE … WHERE title_state = 'pending'`` sets ``done`` and the title, only
   if it is still the automatic one (a rename before or during the call wins), and in the
   same transaction, only if it changed the row, the call's charge (``usage.record_after``,
   at the default model's price): a job that runs twice has one call's effect.

A failed call (provider error, empty answer aside) keeps the automatic title and the claim: the
lease is the wait before the **sweep** (a chore of ``app/maintenance.py``) queues the job
again, ``TITLE_ATTEMPTS`` calls at most; then ``failed``. The sweep also queues the job for a
pending conversation with a complete reply that nobody claimed (the queue was away when the
reply ended, a reply that was spooled) or whose run died (a worker killed mid-job).

``POST /api/conversations/<id>/title`` stays for API clients: it runs the same step in the
request (for its owner only) and answers the conversation as it stands; it also titles a
conversation from before the job (``title_state`` NULL) that still has its automatic title.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import and_, bindparam, case, exists, or_, select, update

from app import catalog, jobs, maintenance, usage
from app.chat.conversations import get_conversation_for
from app.chat.start import TITLE_MAX, title_from, titles_wanted
from app.errors import BudgetExceeded
from app.extensions import db
from app.llm import get_chain
from app.models import (
    Conversation,
    Message,
    MessageStatus,
    Project,
    Role,
    TitleState,
    User,
)
from app.models.base import utcnow
from app.providers.errors import ProviderError
from app.providers.types import ChatRequest, Reply
from app.transactions import release

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "You name chat conversations. Write a title for the conversation below: at most six words, "
    "in the language of the user's message, no quotes, no final punctuation. Answer with the "
    "title only."
)
EXCERPT = 1500  # characters of the message and of the reply sent for the title
MAX_OUTPUT_TOKENS = 64  # a few words, with room for a reasoning model's thinking
TITLE_ATTEMPTS = 3  # calls at most per conversation (a failed one is retried by the sweep)
SWEEP_BATCH = 50

_c = Conversation.__table__.c
_KEEP_ORDER = {"updated_at": _c.updated_at}  # a title is no activity: the list keeps its order

# The final write, built once (``usage.record_after`` keeps it): done, the model's title
# only where the automatic one is still there, only while pending.
_TITLED = (
    update(Conversation.__table__)
    .where(_c.id == bindparam("cid"), _c.title_state == TitleState.PENDING)
    .values(
        title_state=TitleState.DONE,
        title_claimed_at=None,
        title=case((_c.title == bindparam("automatic"), bindparam("new_title")), else_=_c.title),
        **_KEEP_ORDER,
    )
    .returning(_c.id)
)


def lease(config) -> timedelta:
    """How long a claim holds: the chain's calls (a fallback provider after the first) with
    room to store the answer; also the wait before a failed call is tried again."""
    return timedelta(seconds=2 * float(config["LLM_TIMEOUT_SECONDS"]) + 30)


def queue(conversation_id: int) -> bool:
    """Queue the job for a pending conversation whose reply was just stored complete (False:
    the queue is away; the sweep will)."""
    return jobs.enqueue("title", conversation_id)


def title_job(conversation_id: int) -> None:
    """The ``title`` job."""
    write_title(conversation_id)


def write_title(conversation_id: int, *, asked: bool = False) -> bool:
    """Give a pending conversation the model's title if it still has the automatic one and a
    reply is complete (``asked``: ``POST …/title``, which also takes one from before the job,
    ``title_state`` NULL). True when this run made the call and stored its outcome."""
    row = db.session.execute(
        select(Conversation.title, Conversation.title_state, Project.owner_id, Project.id)
        .join(Project, Project.id == Conversation.project_id)
        .where(Conversation.id == conversation_id)
    ).one_or_none()
    wanted = row is not None and (
        row.title_state == TitleState.PENDING or (asked and row.title_state is None)
    )
    first = _first_exchange(conversation_id) if wanted else None
    db.session.commit()
    if first is None:
        return False  # gone, done, or no complete reply yet (the one that completes queues it)
    question, answer, automatic = first
    if row.title != automatic or not titles_wanted():
        _settle(conversation_id)  # renamed, or titles turned off meanwhile: nothing to call
        return False
    try:
        usage.require_budget(row.owner_id)
    except BudgetExceeded:
        _settle(conversation_id)
        return False
    if not _claim(conversation_id, asked=asked):
        return False  # a live run elsewhere, or its attempts are spent
    request = ChatRequest(
        system=INSTRUCTIONS,
        history=[],
        message=f"User: {question[:EXCERPT]}\n\nAssistant: {answer[:EXCERPT]}",
        max_output_tokens=MAX_OUTPUT_TOKENS,
    )
    release()  # no connection is held while the provider answers
    try:
        reply, _ = get_chain().complete(request)
    except ProviderError as exc:
        log.warning("conversation %s: no title from the model (%s)", conversation_id, exc)
        _failed(conversation_id)
        return False
    title = clean(reply.text) or automatic
    params = {"cid": conversation_id, "automatic": automatic, "new_title": title}
    usage.record_after(_TITLED, params, _charge(row.owner_id, row.id, request, reply))
    db.session.commit()
    return True


def _claim(conversation_id: int, *, asked: bool) -> bool:
    now = utcnow()
    over = now - lease(current_app.config)
    state = _c.title_state == TitleState.PENDING
    if asked:
        state = or_(state, _c.title_state.is_(None))
    claimed = db.session.execute(
        update(Conversation.__table__)
        .where(
            _c.id == conversation_id,
            state,
            _c.title_attempts < TITLE_ATTEMPTS,
            or_(_c.title_claimed_at.is_(None), _c.title_claimed_at < over),
        )
        .values(
            title_state=TitleState.PENDING,
            title_claimed_at=now,
            title_attempts=_c.title_attempts + 1,
            **_KEEP_ORDER,
        )
    ).rowcount
    db.session.commit()
    return bool(claimed)


def _settle(conversation_id: int) -> None:
    """Done without a call: the conversation keeps the title it has."""
    db.session.execute(
        update(Conversation.__table__)
        .where(_c.id == conversation_id, _c.title_state == TitleState.PENDING)
        .values(title_state=TitleState.DONE, title_claimed_at=None, **_KEEP_ORDER)
    )
    db.session.commit()


def _failed(conversation_id: int) -> None:
    """A failed call: the claim stays (its lease is the wait before the sweep tries again);
    after the last attempt the conversation is ``failed`` and keeps its automatic title."""
    db.session.execute(
        update(Conversation.__table__)
        .where(
            _c.id == conversation_id,
            _c.title_state == TitleState.PENDING,
            _c.title_attempts >= TITLE_ATTEMPTS,
        )
        .values(title_state=TitleState.FAILED, title_claimed_at=None, **_KEEP_ORDER)
    )
    db.session.commit()


def suggest_title(*, user: User, conversation_id: int) -> Conversation:
    """``POST …/title``: the job's step in the request, for the conversation's owner (404
    otherwise); returns the conversation as it stands."""
    get_conversation_for(user, conversation_id)
    release()
    write_title(conversation_id, asked=True)
    db.session.expire_all()
    return get_conversation_for(user, conversation_id)


def _charge(user_id: int, project_id: int, request: ChatRequest, reply: Reply) -> usage.Charge:
    """The title call's cost, at the default model's price (the request names no model)."""
    return usage.charge_for(
        user_id=user_id,
        project_id=project_id,
        model=catalog.resolve(None),
        tokens_in=reply.meta.tokens_in,
        tokens_out=reply.meta.tokens_out,
        sent_chars=len(request.system) + len(request.message),
        received_chars=len(reply.text),
    )


def clean(text: str) -> str:
    """The model's answer as a title: one line, no wrapping quotes or "Title:", no final
    punctuation, at most ``TITLE_MAX`` characters; "" when nothing is left."""
    line = " ".join((text or "").split())
    if line.lower().startswith("title:"):
        line = line[len("title:") :].strip()
    line = line.strip("\"'“”‘’`*_ ").rstrip(".!?:;,。").strip()
    if len(line) > TITLE_MAX:
        line = line[: TITLE_MAX - 1].rstrip() + "…"
    return line


def _complete_reply():
    return and_(
        Message.role == Role.ASSISTANT,
        Message.status == MessageStatus.COMPLETE,
        Message.content != "",
    )


def _first_exchange(conversation_id: int) -> tuple[str, str, str] | None:
    """``(question, answer, automatic title)``: the first complete reply, the message it
    answered, and the title the conversation's first message gave it; None before a reply is
    complete."""
    answer = db.session.execute(
        select(Message.content, Message.parent_id)
        .where(Message.conversation_id == conversation_id, _complete_reply())
        .order_by(Message.id)
        .limit(1)
    ).one_or_none()
    if answer is None:
        return None
    first = db.session.scalar(
        select(Message.content)
        .where(Message.conversation_id == conversation_id, Message.role == Role.USER)
        .order_by(Message.id)
        .limit(1)
    )
    question = first
    if answer.parent_id is not None:
        question = db.session.scalar(select(Message.content).where(Message.id == answer.parent_id))
    if not first or not question:
        return None
    return question, answer.content, title_from(first)


def sweep(app: Flask) -> None:
    """The chore: a pending conversation whose attempts are spent (and the last lease over) is
    ``failed``; one with a complete reply that nobody runs (never claimed for a while, or its
    lease over) gets its job queued again."""
    now = utcnow()
    over = now - lease(app.config)
    grace = timedelta(seconds=float(app.config["MAINTENANCE_SECONDS"]) or 10)
    pending = _c.title_state == TitleState.PENDING
    db.session.execute(
        update(Conversation.__table__)
        .where(pending, _c.title_attempts >= TITLE_ATTEMPTS, _c.title_claimed_at < over)
        .values(title_state=TitleState.FAILED, title_claimed_at=None, **_KEEP_ORDER)
    )
    replied = exists().where(Message.conversation_id == Conversation.id, _complete_reply())
    found = list(
        db.session.scalars(
            select(Conversation.id)
            .where(
                pending,
                Conversation.title_attempts < TITLE_ATTEMPTS,
                or_(
                    and_(
                        Conversation.title_claimed_at.is_(None),
                        Conversation.created_at < now - grace,
                    ),
                    Conversation.title_claimed_at < over,
                ),
                replied,
            )
            .order_by(Conversation.id)
            .limit(SWEEP_BATCH)
        )
    )
    db.session.commit()
    for conversation_id in found:
        if not queue(conversation_id):
            return


def init_app(app: Flask) -> None:
    jobs.register(app, "title", title_job)
    maintenance.register(app, "title sweep", sweep)
