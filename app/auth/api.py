"""JSON account API: register, login (bearer tokens), me, revoke all tokens; and the account's
model spending against its budgets (``GET /api/usage``)."""

from __future__ import annotations

from flask import Blueprint, current_app
from flask_login import current_user

from app import usage
from app.api import field, json_body, public
from app.auth import services
from app.limits import count_login_attempt, login_per_address, register_per_address

bp = Blueprint("auth", __name__, url_prefix="/auth")
usage_bp = Blueprint("usage", __name__)


def user_json(user) -> dict:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "created_at": user.created_at.isoformat(),
    }


@bp.post("/register")
@public
@register_per_address
def register():
    data = json_body()
    user = services.register_user(
        email=field(data, "email", required=True),
        password=field(data, "password", required=True),
        name=field(data, "name"),
    )
    return {"user": user_json(user), "token": services.token_for(user)}, 201


@bp.post("/login")
@public
@login_per_address
def login():
    data = json_body()
    email = field(data, "email", required=True)
    password = field(data, "password", required=True)
    count_login_attempt(email)  # 429 when this account had too many tries
    user = services.authenticate(email=email, password=password)
    return {"user": user_json(user), "token": services.token_for(user)}


@bp.get("/me")
def me():
    return {"user": user_json(current_user)}


@bp.post("/logout-all")
def logout_all():
    services.revoke_all_sessions(user=current_user)
    return "", 204


def period_json(period: usage.PeriodUsage) -> dict:
    return {
        "spent_usd": period.spent_usd,
        "limit_usd": period.limit_usd,
        "remaining_usd": period.remaining_usd,
        "resets_at": period.resets_at.isoformat(),
    }


@usage_bp.get("/usage")
def spending():
    """What the account spent on models today and this month, against its budgets."""
    day, month = usage.summary(current_user.id)
    return {
        "day": period_json(day),
        "month": period_json(month),
        "input_max_chars": current_app.config["CHAT_INPUT_MAX_CHARS"] or None,
    }
