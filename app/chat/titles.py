"""Conversation titles written by the model.

A new conversation is titled at once from its first message, cut to ``TITLE_MAX`` characters
(``services.title_from``). Once its first reply is complete, the page asks for a better one
(``POST /api/conversations/<id>/title``): one short, non-streamed call with the first exchange,
on each provider's default model (the cheap one an operator configures), after the reply has
been shown, so it never delays a reply. The title changes only while it is still the automatic
one: a rename by the user, before or during the call, wins (a guarded UPDATE). The offline demo
model, a provider failure, an empty answer or ``CHAT_TITLES=false`` keep the cut first message.

The call is charged to the user's spending like a reply (``app/usage.py``, at the price of the
default model, which is what it runs on), and a user over a budget keeps the cut first message
(no call, no error: the title is a nicety, and the chat shows the budget already).
"""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import select, update

from app import catalog, usage
from app.chat.services import TITLE_MAX, get_conversation_for, title_from
from app.errors import BudgetExceeded
from app.extensions import db
from app.llm import get_chain
from app.models import Conversation, Message, MessageStatus, Role, User
from app.providers.base import ChatRequest, ProviderError, Reply

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "You name chat conversations. Write a title for the conversation below: at most six words, "
    "in the language of the user's message, no quotes, no final punctuation. Answer with the "
    "title only."
)
EXCERPT = 1500  # characters of the message and of the reply sent for the title
MAX_OUTPUT_TOKENS = 64  # a few words, with room for a reasoning model's thinking


def suggest_title(*, user: User, conversation_id: int) -> Conversation:
    """Give the conversation a model-written title if it still has the automatic one and its
    first reply is complete; returns the conversation as it stands (404 if not the user's)."""
    conversation = get_conversation_for(user, conversation_id)
    first = _first_exchange(conversation.id)
    chain = get_chain()
    if first is None or chain.is_offline or not current_app.config["CHAT_TITLES"]:
        return conversation
    question, answer = first
    automatic = title_from(question)
    if conversation.title != automatic:
        return conversation  # renamed, or titled already
    try:
        usage.require_budget(user.id)
    except BudgetExceeded:
        return conversation
    request = ChatRequest(
        system=INSTRUCTIONS,
        history=[],
        message=f"User: {question[:EXCERPT]}\n\nAssistant: {answer[:EXCERPT]}",
        max_output_tokens=MAX_OUTPUT_TOKENS,
    )
    project_id = conversation.project_id
    db.session.commit()  # no connection is held while the provider answers
    try:
        reply, _ = chain.complete(request)
    except ProviderError as exc:
        log.warning("conversation %s: no title from the model (%s)", conversation.id, exc)
        return get_conversation_for(user, conversation_id)
    usage.record(_charge(user.id, project_id, request, reply))
    title = clean(reply.text)
    if title:
        db.session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.title == automatic)
            .values(title=title)
        )
    db.session.commit()
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


def _first_exchange(conversation_id: int) -> tuple[str, str] | None:
    """The first user message and the first complete reply after it, or None."""
    rows = db.session.execute(
        select(Message.role, Message.status, Message.content)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id)
        .limit(4)
    ).all()
    question = next((r.content for r in rows if r.role == Role.USER), None)
    answer = next(
        (
            r.content
            for r in rows
            if r.role == Role.ASSISTANT and r.status == MessageStatus.COMPLETE and r.content
        ),
        None,
    )
    return (question, answer) if question and answer else None
