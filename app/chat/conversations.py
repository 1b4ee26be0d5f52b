"""Conversations: list, read a page, rename, set variables, delete, choose the branch shown.

A conversation is created by the first turn in it (``start``); everything else a user does to
one is here. Every lookup is owner-scoped (``get_conversation_for`` raises ``NotFound``).
"""

from __future__ import annotations

from sqlalchemy import delete, select

from app.chat import branches, replies
from app.chat.feedback import get_message_for
from app.errors import NotFound, ValidationFailed
from app.extensions import db
from app.models import Conversation, Message, Project, User
from app.projects.services import get_project_for
from app.prompts.versions import active_version, check_variables, version_by_id

PAGE_MAX = 200


def get_conversation_for(user: User, conversation_id: int) -> Conversation:
    conversation = db.session.scalar(
        select(Conversation)
        .join(Project, Project.id == Conversation.project_id)
        .where(Conversation.id == conversation_id, Project.owner_id == user.id)
    )
    if conversation is None:
        raise NotFound("No such conversation.")
    return conversation


def visitors_conversation(
    *, share_link_id: int, visitor: str, conversation_id: int
) -> Conversation:
    """A conversation of a share link's visitor (``app/share``): theirs on this link, else
    ``NotFound`` (another visitor's, the owner's own, another link's are all the same 404)."""
    conversation = db.session.scalar(
        select(Conversation).where(
            Conversation.id == conversation_id,
            Conversation.share_link_id == share_link_id,
            Conversation.visitor == visitor,
        )
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


KEEP = object()  # "not given": an update leaves the field as it is


def update_conversation(
    *, user: User, conversation_id: int, title: object = KEEP, variables: object = KEEP
) -> Conversation:
    """Rename a conversation and/or set its template variable values (checked against the
    version serving it: its pinned one, else production)."""
    conversation = get_conversation_for(user, conversation_id)
    if title is KEEP and variables is KEEP:
        raise ValidationFailed(fields={"title": "Give a title or variables."})
    if title is not KEEP:
        conversation.title = clean_title(title)
    if variables is not KEEP:
        serving = version_by_id(conversation.prompt_version_id) or active_version(
            db.session.get(Project, conversation.project_id)
        )
        conversation.variables = check_variables(serving, variables) or None
    db.session.commit()
    return conversation


def clean_title(title: object) -> str:
    title = (title if isinstance(title, str) else "").strip()
    if not title:
        raise ValidationFailed(fields={"title": "Give the conversation a title."})
    if len(title) > 200:
        raise ValidationFailed(fields={"title": "Use at most 200 characters."})
    return title


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
    rows, has_more = _page(conversation, before, limit)
    return conversation, rows, has_more


def list_visitor_messages(
    *,
    share_link_id: int,
    visitor: str,
    conversation_id: int,
    before: int | None = None,
    limit: int = 50,
) -> list[Message]:
    """``list_messages`` for a share link's visitor: a page of one of their own conversations
    (``visitors_conversation``), oldest first."""
    conversation = visitors_conversation(
        share_link_id=share_link_id, visitor=visitor, conversation_id=conversation_id
    )
    return _page(conversation, before, limit)[0]


def _page(conversation: Conversation, before: int | None, limit: int) -> tuple[list[Message], bool]:
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
    return rows, has_more


def select_branch(*, user: User, message_id: int) -> Conversation:
    """Show the branch through ``message_id`` (one version of a message): its newest end
    becomes the conversation's ``leaf_id``."""
    message = get_message_for(user, message_id)
    conversation = get_conversation_for(user, message.conversation_id)
    tree = branches.load(conversation.id)
    conversation.leaf_id = tree.newest_leaf(message.id)
    db.session.commit()
    return conversation


def conversation_in(project: Project, user: User, conversation_id: int) -> Conversation:
    conversation = get_conversation_for(user, conversation_id)
    if conversation.project_id != project.id:
        raise NotFound("No such conversation in this project.")
    return conversation
