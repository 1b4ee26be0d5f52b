"""A conversation is a tree of messages, and shows one branch of it.

Each message's ``parent_id`` is the message before it on its branch (None for a first message).
Sending appends to the branch being viewed; **editing** a user's message adds a sibling (same
parent) with the new text, and **regenerating** a reply adds a sibling reply under the same
user's message. Nothing is ever rewritten, so every branch stays. ``Conversation.leaf_id`` names
the last message of the branch being viewed: the page, the message API and the model all see
the path from the first message to it. Switching branch (‹ 2/3 ›) picks a sibling and shows the
newest branch under it.

A child is always created after its parent, so ids grow along every path: a path is sorted, and
"before a message" on it is "smaller id". The tree is read as ``(id, parent_id)`` pairs, one
small query, and walked in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from app.extensions import db
from app.models import Conversation, Message


@dataclass
class Tree:
    parent: dict[int, int | None] = field(default_factory=dict)
    children: dict[int | None, list[int]] = field(default_factory=dict)  # ascending ids

    def __contains__(self, message_id: object) -> bool:
        return message_id in self.parent

    def add(self, message_id: int, parent_id: int | None) -> None:
        """A message just inserted (ids grow, so it is the newest of its siblings)."""
        self.parent[message_id] = parent_id
        self.children.setdefault(parent_id, []).append(message_id)

    def path_to(self, message_id: int | None) -> list[int]:
        """The ids from the first message to ``message_id``, oldest first ([] for None)."""
        path: list[int] = []
        while message_id is not None:
            path.append(message_id)
            message_id = self.parent[message_id]
        path.reverse()
        return path

    def newest_leaf(self, message_id: int) -> int:
        """The end of the newest branch under ``message_id`` (itself if it has no children)."""
        while self.children.get(message_id):
            message_id = self.children[message_id][-1]
        return message_id

    def siblings(self, message_id: int) -> list[int]:
        """``message_id`` and the other versions of it (same parent), oldest first."""
        return self.children[self.parent[message_id]]


def load(conversation_id: int) -> Tree:
    tree = Tree()
    rows = db.session.execute(
        select(Message.id, Message.parent_id)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id)
    )
    for message_id, parent_id in rows:
        tree.add(message_id, parent_id)
    return tree


def leaf(conversation: Conversation, tree: Tree) -> int | None:
    """The last message of the branch being viewed: ``leaf_id`` while it names a message of
    this conversation, else the newest message (None for an empty conversation)."""
    if conversation.leaf_id in tree:
        return conversation.leaf_id
    return max(tree.parent) if tree.parent else None
