"""The events of a reply, from the provider to the reader: one frozen family, carried unchanged.

An adapter (``providers/openai.py``, ``openrouter.py``, ``offline.py``) yields ``Text`` pieces
and one ``Done`` (``meta``: who answered, the usage). The chain (``providers/chain.py``) passes
them on, adds one ``Committed`` just before the first text of the attempt that answers, and
fills in ``Done.fallback`` and ``Done.attempts``; a provider failure is raised, not yielded.
The relay (``chat/relay.py``) joins ``Text`` pieces, adds a ``Heartbeat`` while the model is
silent and turns the raised ``ProviderError`` into a ``Failed``. The turn
(``chat/services.run_turn``) stores the reply and ends with the same ``Done`` or ``Failed``,
now naming the stored row (``message``, ``stored``). ``chat/turns.py`` hands each event to the
broker and to its first reader; ``chat/streaming.py`` is the only place that knows how an event
looks on the wire (``encode``: the SSE event name and its data).

To add a kind of event (reasoning text, a tool call, a citation): a frozen class here, yielded
by the adapter that sees it, and a line in ``streaming.encode`` (and in ``relay`` if pieces of
it should be joined). Nothing in between needs to know it: the chain, the relay and the turn
pass on what they do not handle. It lives with the providers, the lowest layer, because the
adapters produce it; like them it imports no Flask and nothing of the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Named here without importing them: ``ProviderError`` is ``errors.py``'s and ``ReplyMeta``
# ``types.py``'s (which imports this module); ``Message`` and ``Conversation`` are the chat
# layer's rows (``app.models``: providers know nothing of the database).
ProviderError = ReplyMeta = Message = Conversation = Any


@dataclass(frozen=True, slots=True)
class Text:
    """A piece of the reply's text (``delta`` on the wire)."""

    text: str


@dataclass(frozen=True, slots=True)
class Committed:
    """Who answers: yielded by the chain once, just before the first text. From here on there
    is no fallback, so a reply cut short later (Stop, a dropped client, a failure mid-stream),
    which never sees its ``Done``, still records its provider and model."""

    provider: str
    model: str
    fallback: bool


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing arrived for a while (``CHAT_HEARTBEAT_SECONDS``): keep the connection alive."""


@dataclass(frozen=True, slots=True)
class Done:
    """The reply ended well (or was stopped by its user). From an adapter: ``meta``. From the
    chain: also ``fallback`` (not the first provider) and ``attempts`` (the failed attempts
    before it). From the turn: also ``message``, the stored reply, and ``stored`` (False: the
    database was down, the reply waits in the spool). A stopped reply has no ``meta``."""

    meta: ReplyMeta | None = None
    fallback: bool = False
    attempts: tuple[Any, ...] = ()
    message: Message | None = None
    stored: bool = True


@dataclass(frozen=True, slots=True)
class Failed:
    """The reply failed. From the relay: ``error``, the chain's ``ProviderError``. From the
    turn: also ``code`` and ``reason`` (what the reader is told), whether text had arrived
    (``partial``), the stored reply (``message``) and ``stored``."""

    error: ProviderError | None = None
    code: str = ""
    reason: str = ""
    partial: bool = False
    message: Message | None = None
    stored: bool = True


@dataclass(frozen=True, slots=True)
class Started:
    """A turn began (``start``): its id, the conversation and the stored user's message."""

    turn_id: int
    conversation: Conversation
    user_message: Message


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The text so far, replacing what the reader has (a reader served from the database)."""

    text: str


Event = Text | Committed | Heartbeat | Done | Failed | Started | Snapshot
