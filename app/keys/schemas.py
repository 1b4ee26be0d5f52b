"""The API key shapes: a key as listed (never its secret), a new key (its secret, once), and the
body that creates one."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.apimodels import Body, Id, Out, Time, required_str


class ApiKey(Out):
    id: int
    name: str
    prefix: str = Field(
        description="The key's first characters (`phk_` and 8 more), to recognise it."
    )
    scope: Literal["chat", "read", "manage"]
    project_id: int | None = Field(description="A project key's project; null: a personal key.")
    expires_at: Time | None
    revoked_at: Time | None
    last_used_at: Time | None
    last_used_ip: str | None
    rate_per_minute: int | None = Field(description="Calls a minute on /v1; null: the default.")
    monthly_tokens: int | None = Field(description="Tokens a calendar month (UTC); null: none.")
    created_at: Time


class ApiKeyList(Out):
    data: list[ApiKey]


class NewApiKey(Out):
    api_key: ApiKey
    key: str = Field(description="The secret key: shown this once, never again.")


class CreateKey(Body):
    __required__ = ("name",)

    name: str | None = required_str("What uses the key (at most 80 characters).")
    scope: Literal["chat", "read", "manage"] | None = Field(
        None,
        description="`chat` (default): the OpenAI-compatible endpoints only; `read`: also the "
        "JSON API's reads; `manage`: the whole JSON API but the account's credentials.",
    )
    project_id: Id | None = Field(None, description="A project key: /v1, this project only.")
    expires_in_days: int | None = Field(None, ge=1, le=3650)
    rate_per_minute: int | None = Field(None, ge=1, description="At most `API_KEY_RATE_MAX`.")
    monthly_tokens: int | None = Field(None, ge=1, le=2_000_000_000)
