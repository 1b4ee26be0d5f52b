"""JSON chat API: send a message (streamed or not), conversations, paged messages, feedback."""

from __future__ import annotations

import re

from flask import Blueprint, request
from flask_login import current_user

from app.api import args, as_id, body
from app.apimodels import Reply, operation, retry_after
from app.chat import conversations as convos
from app.chat import feedback, services, start, titles, turns
from app.chat.schemas import (
    ChatReply,
    Conversation,
    ConversationList,
    DesignChat,
    Edit,
    EventsQuery,
    Message,
    MessagePage,
    MessagesQuery,
    ProjectChat,
    Rate,
    Regenerate,
    Rename,
    TurnState,
)
from app.chat.streaming import sse_response
from app.errors import ValidationFailed
from app.limits import chat_per_user, conversation_edits_per_user, turn_events_per_user

bp = Blueprint("chat", __name__)


_STREAM = """\
Sends a message and answers with the stored reply. With `"stream": true` (or, when `stream` is
absent, `Accept: text/event-stream`) the answer is a stream of server-sent events instead:

- `start`: `{turn_id, conversation, user_message}` (`ChatStreamStart`), once the user's message
  is stored;
- `delta`: `{text}` (`ChatStreamDelta`), the next piece of the reply;
- then exactly one of `done`: `{message, stored}` (`ChatStreamDone`, the reply with its rendered
  `html` and `meta` line) or `error`: `{error: {code, message}, partial, message, stored}`
  (`ChatStreamError`, the partial or failed reply); `stored` is false when the database was
  unreachable as the reply ended: the server keeps the reply and writes it when the database is
  back;
- `: keep-alive` comment lines while the model is silent.

The reply is generated on the server whatever happens to this stream: closing it does not stop
the reply (`POST /api/turns/{turn_id}/stop` does), and `GET /api/turns/{turn_id}/events`
attaches to it again with the `id:` of the last event received. Each event is `event: <name>`,
an `id:` line (the reader's place), and one `data:` line of JSON. A bad request (404, 422, 422
`input_too_long`, 429 `budget_exceeded`) is answered as JSON before any stream starts; once it
has started the answer is 200, and a provider failure arrives as the `error` event. Without
streaming, a provider failure is a 502 (the user's message and the failed reply stay stored).
With `"regenerate": true` no new message is stored: the conversation's last user message is
answered again."""

_DESIGN_CHAT = """\
One chat per project, as a client that keeps "the project's chat" expects: without
`conversationId` the message continues the project's chat, its most recently active
conversation that is not pinned to a version (a new one when it has none), so the model sees
the earlier turns. `"newConversation": true` starts a new conversation instead; `version` or
`label` (a pinned try) always starts one. `conversationId` names a conversation of the
project. Ids may be numbers or strings of digits. The answer's `conversation_id` says which
conversation was used. Otherwise the same as `POST /api/projects/{project_id}/chat`.

"""

_REPLY = Reply("The reply, as JSON or (streaming) as server-sent events.", ChatReply, stream=True)


def _wants_stream(data) -> bool:
    if data.stream is None:
        return request.accept_mimetypes.best == "text/event-stream"
    return data.stream


def _chat(project_id: int, data, conversation_id: int | None, *, latest: bool = False):
    """The body chooses the way to start the turn (``start``): ``regenerate``, a ``version``
    to pin a new conversation to, or a message to send."""
    message = data.message
    again = bool(data.regenerate)
    version, label = data.version, data.label
    if version is not None and label is not None:
        raise ValidationFailed(
            "Choose the version by number or by label, not both.",
            fields={"label": "Leave out `version` when giving a label."},
        )
    if (version is not None or label is not None) and (again or conversation_id is not None):
        name = "version" if version is not None else "label"
        raise ValidationFailed(
            "A version is chosen when a conversation starts.",
            fields={name: "Only a new conversation can be pinned."},
        )
    if again:
        turn = start.regenerate(
            user=current_user,
            conversation_id=conversation_id,
            project_id=project_id,
            latest=latest,
            variables=data.variables,
        )
    elif version is not None or label is not None:
        turn = start.pinned(
            user=current_user,
            project_id=project_id,
            message=message,
            version=version,
            label=label,
            variables=data.variables,
        )
    else:
        turn = start.send(
            user=current_user,
            project_id=project_id,
            message=message,
            conversation_id=conversation_id,
            latest=latest,
            variables=data.variables,
        )
    return _answer(turn, data)


def _answer(turn: start.Turn, data):
    """The same answer for a new message and a regenerated one: SSE or one JSON reply."""
    if _wants_stream(data):
        return sse_response(turns.launch(turn))  # leaving this stream does not stop the turn
    reply = services.complete_turn(turn)
    return ChatReply(
        conversation_id=turn.conversation_id, message=Message.read(reply), reply=reply.content
    ).as_json()


@bp.post("/projects/<int:project_id>/chat")
@operation(
    "chatInProject",
    "Chat in a project",
    tag="chat",
    rate_limited=True,
    description=_STREAM,
    body=ProjectChat,
    responses={200: _REPLY},
    errors=(502,),
)
@chat_per_user
def project_chat(project_id: int):
    data = body()
    return _chat(project_id, data, data.conversation_id)


@bp.post("/chat")
@operation(
    "chat",
    "Chat (project in the body)",
    tag="chat",
    rate_limited=True,
    description=_DESIGN_CHAT + _STREAM,
    body=DesignChat,
    responses={200: _REPLY},
    errors=(404, 502),
)
@chat_per_user
def chat():
    """The design's shape, one chat per project: ``{projectId, message}`` continues the
    project's chat (its latest conversation that is not pinned to a version);
    ``newConversation: true`` starts another, ``conversationId`` names one. Ids may arrive as
    numeric strings, as a JavaScript client reading them from a URL sends them."""
    data = body()
    project_id = as_id("projectId", data.projectId, required=True)
    conversation_id = as_id("conversationId", data.conversationId)
    new = bool(data.newConversation)
    if new and conversation_id is not None:
        raise ValidationFailed(
            fields={"newConversation": "Send either newConversation or conversationId."}
        )
    return _chat(project_id, data, conversation_id, latest=not new)


@bp.get("/projects/<int:project_id>/conversations")
@operation(
    "listConversations",
    "A project's conversations",
    tag="conversations",
    description="Most recently active first.",
    responses={200: ("The conversations.", ConversationList)},
)
def conversations(project_id: int):
    found = convos.list_conversations(user=current_user, project_id=project_id)
    return ConversationList(data=[Conversation.read(c) for c in found]).as_json()


@bp.get("/conversations/<int:conversation_id>")
@operation(
    "getConversation",
    "A conversation",
    tag="conversations",
    responses={200: ("The conversation.", Conversation)},
)
def conversation(conversation_id: int):
    return Conversation.of(convos.get_conversation_for(current_user, conversation_id))


@bp.patch("/conversations/<int:conversation_id>")
@operation(
    "renameConversation",
    "Rename a conversation, or set its variables",
    tag="conversations",
    rate_limited=True,
    description="`title`: not blank, at most 200 characters after trimming. `variables`: the "
    "conversation's template variable values (docs/templates.md), checked against the version "
    "serving it; a 422 `variables_invalid` names an unknown or mistyped one. Counts against "
    "`RATELIMIT_CONVERSATION_EDITS`.",
    body=Rename,
    responses={200: ("The conversation.", Conversation)},
)
@conversation_edits_per_user
def rename(conversation_id: int):
    data = body()
    found = convos.update_conversation(
        user=current_user,
        conversation_id=conversation_id,
        title=data.title if data.given("title") else convos.KEEP,
        variables=data.variables if data.given("variables") else convos.KEEP,
    )
    return Conversation.of(found)


@bp.delete("/conversations/<int:conversation_id>")
@operation(
    "deleteConversation",
    "Delete a conversation",
    tag="conversations",
    description="With its messages.",
    responses={204: "Deleted."},
)
def delete(conversation_id: int):
    convos.delete_conversation(user=current_user, conversation_id=conversation_id)
    return "", 204


@bp.post("/conversations/<int:conversation_id>/title")
@operation(
    "suggestTitle",
    "A title written by the model",
    tag="conversations",
    rate_limited=True,
    description="The server titles a new conversation by itself once a reply is complete (a "
    "background job; read the conversation again to see it): this asks for the same step now, "
    "in the request. For a conversation that still has its automatic title (its first message, "
    "cut to 60 characters) and a complete reply: one short call with the first exchange, on each "
    "provider's default model, and the answer (cleaned, at most 60 characters) becomes the "
    "title, once per conversation. A renamed conversation, the offline demo model, a provider "
    "failure, an empty answer or a title written already leave the title as it is; the answer "
    "is the conversation either way. A rename that lands during the call wins. No body.",
    responses={200: ("The conversation, with its title.", Conversation)},
)
@chat_per_user  # a provider call: counted with the messages
def title(conversation_id: int):
    """A title written by the model for a conversation that still has its automatic one."""
    found = titles.suggest_title(user=current_user, conversation_id=conversation_id)
    return Conversation.of(found)


@bp.post("/conversations/<int:conversation_id>/regenerate")
@operation(
    "regenerate",
    "Answer a user message again",
    tag="chat",
    rate_limited=True,
    description="No new user message is stored. `message_id` names the reply to redo (or a "
    "user's message to answer again); without it, the last message of the branch being viewed. "
    "The earlier reply stays as a sibling of the new one (`siblings` in the message list), the "
    "new reply ends the branch being viewed, and the provider sees that branch up to the "
    "message answered. The body is optional. Same answers and events as chat:\n\n" + _STREAM,
    body=Regenerate,
    body_optional=True,
    responses={200: _REPLY, 422: "`message_id` is not a message of this conversation."},
    errors=(502,),
)
@chat_per_user  # a provider call like any message: counted in the same per-user budget
def regenerate(conversation_id: int):
    """Answer a user message again (``message_id``: the reply to redo; default the branch's
    last); the earlier reply is kept as a sibling (see the service).

    The body (``{message_id?, stream?}``) is optional and read after the ownership check."""
    convos.get_conversation_for(current_user, conversation_id)  # 404 before the body
    data = body(optional=True)
    turn = start.regenerate(
        user=current_user, conversation_id=conversation_id, reply_id=data.message_id
    )
    return _answer(turn, data)


@bp.post("/messages/<int:message_id>/edit")
@operation(
    "editMessage",
    "Send a new version of a user's message",
    tag="chat",
    rate_limited=True,
    description="The new text is stored as a sibling of the message (same place in the "
    "conversation) and answered with the branch up to it; the old version and everything after "
    "it stay, one `select` away. The new reply ends the branch being viewed. Same answers and "
    "events as chat:\n\n" + _STREAM,
    body=Edit,
    responses={200: _REPLY, 422: "Not a user's message, or the text is empty or too long."},
    errors=(502,),
)
@chat_per_user
def edit(message_id: int):
    """A new version of a user's message, answered: a new branch beside the old one."""
    feedback.get_message_for(current_user, message_id)  # 404 before the body
    data = body()
    turn = start.edit(user=current_user, message_id=message_id, message=data.message)
    return _answer(turn, data)


@bp.post("/messages/<int:message_id>/select")
@operation(
    "selectBranch",
    "Show the branch through a version of a message",
    tag="conversations",
    description="The conversation's branch being viewed becomes the newest one through this "
    "message (a ‹ 2/3 › switch). No body.",
    responses={200: ("The conversation.", Conversation)},
)
def select(message_id: int):
    """Show the branch through this version of a message (its newest end)."""
    return Conversation.of(convos.select_branch(user=current_user, message_id=message_id))


@bp.get("/conversations/<int:conversation_id>/messages")
@operation(
    "listMessages",
    "A page of messages",
    tag="conversations",
    description="Oldest first, ending just before `before` (the newest page without it). Any "
    "page costs the same in any conversation length.",
    query=MessagesQuery,
    responses={
        200: ("The page.", MessagePage),
        422: "`before` or `limit` is not a whole number.",
    },
)
def messages(conversation_id: int):
    query = args()
    _, rows, has_more = convos.list_messages(
        user=current_user,
        conversation_id=conversation_id,
        before=query.before,
        limit=query.limit,
    )
    html = query.html == "1"
    page = MessagePage(data=[Message.read(m, html=html) for m in rows], has_more=has_more)
    return page.as_json()


@bp.put("/messages/<int:message_id>/feedback")
@operation(
    "rateReply",
    "Rate a reply 👍/👎, with an optional comment",
    tag="conversations",
    description="Sets or changes the owner's feedback on an assistant reply that has finished. "
    '`rating` is required: `"up"`, `"down"`, or `null` to remove the feedback (as `DELETE`). '
    "`comment` (trimmed, at most 2000 characters): left out or null keeps the stored comment, "
    "blank removes it; a comment needs a rating. Changeable any number of times; `rated_at` is "
    "the last change.",
    body=Rate,
    responses={
        200: ("The reply, with its `feedback`.", Message),
        422: "A bad `rating` or `comment` (`validation_failed`), a user's message "
        "(`not_a_reply`), or a reply still being written (`reply_not_finished`).",
    },
)
def rate(message_id: int):
    """``{rating: "up"|"down"|null, comment?}``: set, change or (null) remove the feedback on a
    finished reply. A comment left out (or null) is kept; a blank one is removed."""
    data = body()
    reply = feedback.rate_reply(
        user=current_user,
        message_id=message_id,
        rating=data.rating if data.given("rating") else feedback.MISSING,
        comment=data.comment,
    )
    return Message.of(reply)


@bp.delete("/messages/<int:message_id>/feedback")
@operation(
    "unrateReply",
    "Remove the feedback on a reply",
    tag="conversations",
    description="Removes the rating and the comment. Idempotent.",
    responses={
        204: "Removed (or there was none).",
        422: "A user's message (`not_a_reply`), or a reply still being written.",
    },
)
def unrate(message_id: int):
    feedback.clear_feedback(user=current_user, message_id=message_id)
    return "", 204


EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")


@bp.get("/turns/<int:turn_id>/events")
@operation(
    "turnEvents",
    "Attach to a turn's events",
    tag="chat",
    description="Server-sent events of a turn (`ChatStreamEvent`): after the event id given as "
    "`Last-Event-ID` (or `?after=`), everything the reader missed, then live events, then the "
    "terminal `done` or `error`; without an id, from the `start`. A finished turn replays its "
    "stored outcome. A reader served from the database (another process without a shared "
    "broker, the broker out of reach, or events past `TURN_EVENTS_TTL_SECONDS`) gets a "
    "`snapshot` of the text so far first, then `delta`s as the server stores more; those "
    "events carry no `id`. `: keep-alive` comments while nothing happens. A finished turn is "
    "answered at once, whatever the id. Open readers are capped per user "
    "(`TURN_READERS_PER_USER`) and per turn (`TURN_READERS_PER_TURN`), and attaching counts "
    "against `RATELIMIT_TURN_EVENTS`.",
    query=EventsQuery,
    rate_limited=True,
    responses={
        200: Reply("The turn's events.", stream=True),
        422: "`after` / `Last-Event-ID` is not an event id.",
        429: Reply(
            "`rate_limited` (`RATELIMIT_TURN_EVENTS`), or `too_many_readers`: this user (or "
            "this turn) has as many readers open as allowed; close one.",
            error=True,
            headers=retry_after("Seconds to wait before trying again."),
        ),
    },
)
@turn_events_per_user
def turn_events(turn_id: int):
    """Attach to a turn: the events after ``Last-Event-ID`` (or ``?after=``), then live, then
    the terminal event; a finished turn replays its stored outcome."""
    after = request.headers.get("Last-Event-ID") or args().after
    if after is not None and not EVENT_ID.fullmatch(after):
        raise ValidationFailed(fields={"after": "An event id, such as 0-12."})
    entries, release = turns.open_reader(current_user, turn_id, after)
    response = sse_response(entries)
    response.call_on_close(release)  # also when the client left before the first byte
    return response


@bp.post("/turns/<int:turn_id>/stop")
@operation(
    "stopTurn",
    "Stop a turn",
    tag="chat",
    description="Ends the reply from any process and any tab: the provider request is closed "
    "and the reply is stored `incomplete` with what arrived; readers get a `done`. Idempotent: "
    "a finished turn is left as it is. Closing a stream is not Stop.",
    responses={200: ("The turn as it is now.", TurnState)},
)
def stop_turn(turn_id: int):
    """Stop a turn from anywhere; idempotent. The reply ends ``incomplete`` with what arrived."""
    return TurnState.of(turns.stop(current_user, turn_id))
