"""JSON chat API: send a message (streamed or not), conversations, paged messages, feedback."""

from __future__ import annotations

import re

from flask import Blueprint, request
from flask_login import current_user

from app.api import field, id_field, int_arg, json_body
from app.chat import feedback, services, titles, turns
from app.chat.serializers import conversation_json, message_json
from app.chat.streaming import sse_response
from app.errors import ValidationFailed
from app.limits import chat_per_user, turn_events_per_user

bp = Blueprint("chat", __name__)


def _wants_stream(data: dict) -> bool:
    stream = field(data, "stream", kind=bool)
    if stream is None:
        return request.accept_mimetypes.best == "text/event-stream"
    return stream


def _chat(project_id: int, data: dict, conversation_id: int | None, *, latest: bool = False):
    turn = services.start_turn(
        user=current_user,
        project_id=project_id,
        message=field(data, "message"),
        conversation_id=conversation_id,
        regenerate=bool(field(data, "regenerate", kind=bool)),
        version=field(data, "version", kind=int),
        latest=latest,
    )
    return _answer(turn, data)


def _answer(turn: services.Turn, data: dict):
    """The same answer for a new message and a regenerated one: SSE or one JSON reply."""
    if _wants_stream(data):
        return sse_response(turns.launch(turn))  # leaving this stream does not stop the turn
    reply = services.complete_turn(turn)
    return {
        "conversation_id": turn.conversation_id,
        "message": message_json(reply),
        "reply": reply.content,
    }


@bp.post("/projects/<int:project_id>/chat")
@chat_per_user
def project_chat(project_id: int):
    data = json_body()
    return _chat(project_id, data, field(data, "conversation_id", kind=int))


@bp.post("/chat")
@chat_per_user
def chat():
    """The design's shape, one chat per project: ``{projectId, message}`` continues the
    project's chat (its latest conversation that is not pinned to a version);
    ``newConversation: true`` starts another, ``conversationId`` names one. Ids may arrive as
    numeric strings, as a JavaScript client reading them from a URL sends them."""
    data = json_body()
    project_id = id_field(data, "projectId", required=True)
    conversation_id = id_field(data, "conversationId")
    new = bool(field(data, "newConversation", kind=bool))
    if new and conversation_id is not None:
        raise ValidationFailed(
            fields={"newConversation": "Send either newConversation or conversationId."}
        )
    return _chat(project_id, data, conversation_id, latest=not new)


@bp.get("/projects/<int:project_id>/conversations")
def conversations(project_id: int):
    found = services.list_conversations(user=current_user, project_id=project_id)
    return {"data": [conversation_json(c) for c in found]}


@bp.get("/conversations/<int:conversation_id>")
def conversation(conversation_id: int):
    return conversation_json(services.get_conversation_for(current_user, conversation_id))


@bp.patch("/conversations/<int:conversation_id>")
def rename(conversation_id: int):
    data = json_body()
    found = services.rename_conversation(
        user=current_user, conversation_id=conversation_id, title=field(data, "title")
    )
    return conversation_json(found)


@bp.delete("/conversations/<int:conversation_id>")
def delete(conversation_id: int):
    services.delete_conversation(user=current_user, conversation_id=conversation_id)
    return "", 204


@bp.post("/conversations/<int:conversation_id>/title")
@chat_per_user  # a provider call: counted with the messages
def title(conversation_id: int):
    """A title written by the model for a conversation that still has its automatic one."""
    found = titles.suggest_title(user=current_user, conversation_id=conversation_id)
    return conversation_json(found)


@bp.post("/conversations/<int:conversation_id>/regenerate")
@chat_per_user  # a provider call like any message: counted in the same per-user budget
def regenerate(conversation_id: int):
    """Answer a user message again (``message_id``: the reply to redo; default the branch's
    last); the earlier reply is kept as a sibling (see the service).

    The body (``{message_id?, stream?}``) is optional and read after the ownership check."""
    services.get_conversation_for(current_user, conversation_id)  # 404 before the body
    data = json_body() if request.content_length else {}
    turn = services.start_regenerate(
        user=current_user,
        conversation_id=conversation_id,
        reply_id=field(data, "message_id", kind=int),
    )
    return _answer(turn, data)


@bp.post("/messages/<int:message_id>/edit")
@chat_per_user
def edit(message_id: int):
    """A new version of a user's message, answered: a new branch beside the old one."""
    feedback.get_message_for(current_user, message_id)  # 404 before the body
    data = json_body()
    turn = services.start_edit(
        user=current_user, message_id=message_id, message=field(data, "message")
    )
    return _answer(turn, data)


@bp.post("/messages/<int:message_id>/select")
def select(message_id: int):
    """Show the branch through this version of a message (its newest end)."""
    return conversation_json(services.select_branch(user=current_user, message_id=message_id))


@bp.get("/conversations/<int:conversation_id>/messages")
def messages(conversation_id: int):
    _, rows, has_more = services.list_messages(
        user=current_user,
        conversation_id=conversation_id,
        before=int_arg("before"),
        limit=int_arg("limit", 50),
    )
    html = request.args.get("html") == "1"
    return {"data": [message_json(m, html=html) for m in rows], "has_more": has_more}


@bp.put("/messages/<int:message_id>/feedback")
def rate(message_id: int):
    """``{rating: "up"|"down"|null, comment?}``: set, change or (null) remove the feedback on a
    finished reply. A comment left out (or null) is kept; a blank one is removed."""
    data = json_body()
    reply = feedback.rate_reply(
        user=current_user,
        message_id=message_id,
        rating=data.get("rating", feedback.MISSING),
        comment=data.get("comment"),
    )
    return message_json(reply)


@bp.delete("/messages/<int:message_id>/feedback")
def unrate(message_id: int):
    feedback.clear_feedback(user=current_user, message_id=message_id)
    return "", 204


EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")


@bp.get("/turns/<int:turn_id>/events")
@turn_events_per_user
def turn_events(turn_id: int):
    """Attach to a turn: the events after ``Last-Event-ID`` (or ``?after=``), then live, then
    the terminal event; a finished turn replays its stored outcome."""
    after = request.headers.get("Last-Event-ID") or request.args.get("after")
    if after is not None and not EVENT_ID.fullmatch(after):
        raise ValidationFailed(fields={"after": "An event id, such as 0-12."})
    entries, release = turns.open_reader(current_user, turn_id, after)
    response = sse_response(entries)
    response.call_on_close(release)  # also when the client left before the first byte
    return response


@bp.post("/turns/<int:turn_id>/stop")
def stop_turn(turn_id: int):
    """Stop a turn from anywhere; idempotent. The reply ends ``incomplete`` with what arrived."""
    row = turns.stop(current_user, turn_id)
    return {"id": row.id, "conversation_id": row.conversation_id, "status": row.status}
