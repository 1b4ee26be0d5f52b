"""JSON Compare API: start a comparison (both replies generate in the background; attach to
each with ``GET /api/turns/<turn_id>/events``), read one or a project's list, and set the
preference."""

from __future__ import annotations

from flask import Blueprint, request
from flask_login import current_user

from app.api import int_arg, json_body
from app.chat.serializers import message_json
from app.compare import services
from app.limits import compare_per_user

bp = Blueprint("compare", __name__)


def side_json(side: services.SideView) -> dict:
    return {
        "version": side.version,
        "model": side.model,
        "conversation_id": side.conversation_id,
        "turn_id": side.reply.id if side.reply else None,
        "reply": message_json(side.reply, html=True) if side.reply else None,
    }


def comparison_json(view: services.ComparisonView) -> dict:
    c = view.comparison
    return {
        "id": c.id,
        "project_id": c.project_id,
        "message": c.message,
        "left": side_json(view.left),
        "right": side_json(view.right),
        "choice": c.choice,
        "chosen_at": c.chosen_at.isoformat() if c.chosen_at else None,
        "created_at": c.created_at.isoformat(),
    }


@bp.post("/projects/<int:project_id>/comparisons")
@compare_per_user  # two provider calls: two hits of the chat budget
def create(project_id: int):
    data = json_body()
    view = services.start_comparison(
        user=current_user,
        project_id=project_id,
        message=data.get("message"),
        left=data.get("left"),
        right=data.get("right"),
    )
    return comparison_json(view), 201


@bp.get("/projects/<int:project_id>/comparisons")
def index(project_id: int):
    _, views, has_more = services.list_comparisons(
        user=current_user,
        project_id=project_id,
        before=int_arg("before"),
        limit=int_arg("limit", services.LIST_DEFAULT),
    )
    return {"data": [comparison_json(v) for v in views], "has_more": has_more}


@bp.get("/comparisons/<int:comparison_id>")
def show(comparison_id: int):
    return comparison_json(services.get_comparison(user=current_user, comparison_id=comparison_id))


@bp.put("/comparisons/<int:comparison_id>/preference")
def preference(comparison_id: int):
    data = json_body() if request.content_length else {}
    view = services.set_preference(
        user=current_user,
        comparison_id=comparison_id,
        choice=data.get("choice", services.UNSET),
    )
    return comparison_json(view)
