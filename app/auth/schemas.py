"""The account API's shapes: the user, a session (user and bearer token), the bodies of
register and login, and the account's model spending against its budgets."""

from __future__ import annotations

from pydantic import Field

from app.apimodels import Body, Out, Time, documented


class User(Out):
    id: int
    email: str
    name: str | None
    created_at: Time


class Me(Out):
    user: User


class Session(Out):
    user: User
    token: str = Field(description="A bearer JWT.")


class UsagePeriod(Out):
    spent_usd: float = documented("Estimated: tokens × `MODELS` prices.", minimum=0)
    limit_usd: float | None = documented("The cap; null: none.", minimum=0)
    remaining_usd: float | None = documented(minimum=0)
    resets_at: Time = Field(description="When the next period starts (UTC).")


class Usage(Out):
    day: UsagePeriod
    month: UsagePeriod
    input_max_chars: int | None = Field(
        description="The most characters one turn may send the model (system prompt, files, "
        "earlier messages and message); null: no cap."
    )


class Register(Body):
    email: str = Field(json_schema_extra={"format": "email"})
    password: str = Field(json_schema_extra={"minLength": 8})
    name: str | None = None


class Login(Body):
    email: str
    password: str
