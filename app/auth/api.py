"""JSON account API: register, login (bearer tokens), me, revoke all tokens; and the account's
model spending against its budgets (``GET /api/usage``)."""

from __future__ import annotations

from flask import Blueprint, current_app
from flask_login import current_user

from app import usage
from app.api import body, public
from app.apimodels import operation
from app.auth import services
from app.auth.schemas import Login, Me, Register, Session, Usage, UsagePeriod, User
from app.limits import count_login_attempt, login_per_address, register_per_address

bp = Blueprint("auth", __name__, url_prefix="/auth")
usage_bp = Blueprint("usage", __name__)


def _session(user) -> dict:
    return Session(user=User.read(user), token=services.token_for(user)).as_json()


@bp.post("/register")
@operation(
    "register",
    "Create an account",
    tag="auth",
    rate_limited=True,
    description="Passwords: at least 8 characters and at most 72 bytes (UTF-8). Names: at most "
    "80 characters. A taken email is a 409: registration tells whether an address has an "
    "account, so it counts against `RATELIMIT_REGISTER` per client address, shared with the "
    "`/register` page.",
    body=Register,
    responses={
        201: ("The new account and a bearer token.", Session),
        409: "`email_taken`: an account with this email exists.",
    },
)
@public
@register_per_address
def register():
    data = body()
    user = services.register_user(email=data.email, password=data.password, name=data.name)
    return _session(user), 201


@bp.post("/login")
@operation(
    "login",
    "Log in: a bearer token",
    tag="auth",
    rate_limited=True,
    description="A wrong email or password is the same 401 (`invalid_credentials`), in the "
    "same time.",
    body=Login,
    responses={200: ("The account and a bearer token.", Session)},
)
@public
@login_per_address
def login():
    data = body()
    count_login_attempt(data.email)  # 429 when this account had too many tries
    user = services.authenticate(email=data.email, password=data.password)
    return _session(user)


@bp.get("/me")
@operation(
    "getMe",
    "Who the token belongs to",
    tag="auth",
    responses={200: ("The account.", Me)},
)
def me():
    return Me(user=User.read(current_user)).as_json()


@bp.post("/logout-all")
@operation(
    "logoutAll",
    "Log out everywhere",
    tag="auth",
    description="Revokes every bearer token and session of the account, this one too.",
    responses={204: "Revoked."},
)
def logout_all():
    services.revoke_all_sessions(user=current_user)
    return "", 204


@usage_bp.get("/usage")
@operation(
    "getUsage",
    "Model spending against your budgets",
    tag="auth",
    description="Estimated cost of your replies, titles and comparisons (tokens × the `MODELS` "
    "price of the model asked for) today and this month (UTC), the server's caps "
    "(`USER_BUDGET_USD_DAY`, `USER_BUDGET_USD_MONTH`) and what is left. Once a cap is reached, "
    "calls to a model answer 429 `budget_exceeded` until `resets_at`.",
    responses={200: ("Spend and budgets.", Usage)},
)
def spending():
    """What the account spent on models today and this month, against its budgets."""
    day, month = usage.summary(current_user.id)
    return Usage(
        day=UsagePeriod.read(day),
        month=UsagePeriod.read(month),
        input_max_chars=current_app.config["CHAT_INPUT_MAX_CHARS"] or None,
    ).as_json()
